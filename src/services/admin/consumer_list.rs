//! `GET /admin/consumers`: every consumer this instance knows by name (config
//! keys, runtime keys, overrides) in order, each with its count of runtime keys,
//! a page at a time. After a cursor (`?after=<id>&limit=N`) a page is a range of
//! each ordered index: it costs the page, however deep. By number
//! (`?page=&per_page=`) it is a walk from the first name: it costs the names
//! before the page's end, and the total a look per config name and override.

use crate::consumers::keys::RuntimeKeys;
use crate::consumers::overrides::TierOverrides;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

/// Where the names are.
pub struct Names<'a> {
    pub runtime_keys: &'a RuntimeKeys,
    /// The config's API-key consumers.
    pub configured: &'a BTreeSet<Arc<str>>,
    pub overrides: &'a TierOverrides,
}

/// A consumer and its count of runtime keys.
pub type Listed = (Arc<str>, usize);

impl Names<'_> {
    /// Up to `limit` consumers after `after` (from the first when `None`).
    pub fn after(&self, after: Option<&str>, limit: usize) -> Vec<Listed> {
        let keyed: Vec<Listed> = self.runtime_keys.with_consumers(|index| {
            let listed = |(c, n): (&Arc<str>, usize)| (c.clone(), n);
            match after {
                Some(after) => index.consumers_after(after).take(limit).map(listed).collect(),
                None => index.consumers().take(limit).map(listed).collect(),
            }
        });
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let configured = self
            .configured
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|c| (c.clone(), 0));
        let overridden = self
            .overrides
            .names_after(after, limit)
            .into_iter()
            .map(|c| (c, 0));
        // A name without keys among `keyed`'s has none: past `keyed`'s last name, once
        // it holds `limit`, a name is past the page too.
        merge_unique(keyed.into_iter(), merge_unique(configured, overridden))
            .take(limit)
            .collect()
    }

    /// Page `page` (from 1) of `per_page` consumers, and the count of them all.
    pub fn numbered(&self, page: usize, per_page: usize) -> (usize, Vec<Listed>) {
        let mut others = self.configured.clone();
        others.extend(self.overrides.names_after(None, usize::MAX));
        self.runtime_keys.with_consumers(|index| {
            let total =
                index.consumer_count() + others.iter().filter(|c| index.of(c).next().is_none()).count();
            let others = others.iter().map(|c| (c, index.of(c).count()));
            let listed = merge_unique(index.consumers(), others)
                .skip((page - 1).saturating_mul(per_page))
                .take(per_page)
                .map(|(c, n)| (c.clone(), n))
                .collect();
            (total, listed)
        })
    }
}

/// Two lists sorted by name, merged in order, a name in both taken once (from `a`).
fn merge_unique<N: Ord, T>(
    a: impl Iterator<Item = (N, T)>,
    b: impl Iterator<Item = (N, T)>,
) -> impl Iterator<Item = (N, T)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 == y.0 => {
            b.next();
            a.next()
        }
        (Some(x), Some(y)) if x.0 < y.0 => a.next(),
        (Some(_), Some(_)) | (None, _) => b.next(),
        (Some(_), None) => a.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::keys::RuntimeKey;
    use crate::vocab::ids::TierId;

    #[test]
    fn merging_keeps_name_order_and_takes_a_shared_name_once() {
        let runtime = [("a", 2), ("c", 1)];
        let others = [("b", 0), ("c", 0), ("d", 0)];
        let merged: Vec<(&str, usize)> = merge_unique(runtime.into_iter(), others.into_iter()).collect();
        assert_eq!(merged, vec![("a", 2), ("b", 0), ("c", 1), ("d", 0)]);
    }

    #[test]
    fn pages_after_a_cursor_are_the_numbered_pages() {
        let runtime_keys = RuntimeKeys::default();
        for (i, consumer) in ["a", "c", "c", "e", "g", "h"].into_iter().enumerate() {
            let digest = [i as u8; 32];
            runtime_keys.insert(RuntimeKey::new(
                i.to_string(),
                Arc::from(consumer),
                digest,
                None,
                0,
                None,
            ));
        }
        let configured: BTreeSet<Arc<str>> = ["b", "c", "h", "i"].into_iter().map(Arc::from).collect();
        let overrides = TierOverrides::default();
        for consumer in ["a", "d", "i", "j"] {
            overrides.set(consumer, TierId(0));
        }
        let names = Names {
            runtime_keys: &runtime_keys,
            configured: &configured,
            overrides: &overrides,
        };
        let (total, all) = names.numbered(1, 100);
        let shown = |listed: &[Listed]| listed.iter().map(|(c, n)| format!("{c}{n}")).collect::<Vec<_>>();
        assert_eq!(total, 9);
        assert_eq!(
            shown(&all),
            ["a1", "b0", "c2", "d0", "e1", "g1", "h1", "i0", "j0"]
        );
        for limit in 1..=4 {
            let mut walked = Vec::new();
            let mut after: Option<Arc<str>> = None;
            loop {
                let page = names.after(after.as_deref(), limit);
                assert!(page.len() <= limit);
                walked.extend(page.iter().cloned());
                if page.len() < limit {
                    break;
                }
                after = page.last().map(|(c, _)| c.clone());
            }
            assert_eq!(shown(&walked), shown(&all), "limit {limit}");
            assert_eq!(
                shown(&names.numbered(2, limit).1),
                shown(&all[limit..(2 * limit).min(all.len())])
            );
        }
    }
}
