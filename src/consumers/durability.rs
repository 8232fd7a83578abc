//! Where runtime consumers outlive a restart: one choice, made at start-up from
//! the config (`redis`, else `state_file`, else neither), that the admin API
//! writes through before a change applies.

/// The I/O of each choice is the services': `R` reaches Redis, `F` writes the
/// state file.
pub enum Durability<R, F> {
    /// Redis holds them for every instance; each sync round applies the cluster's changes.
    Redis(R),
    /// A single instance keeps them, with its quota counts, in its state file.
    StateFile(F),
    /// Kept nowhere: a restart forgets them.
    Memory,
}
