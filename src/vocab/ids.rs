//! Typed ids of what the config lists (routes, upstreams, tiers), each its
//! position in the config's list, and [`ById`], a list read only through its ids:
//! a route's id cannot index the upstreams, and no list depends on another's order.

use std::marker::PhantomData;

/// An id that is a position in one of the config's lists.
pub trait Id: Copy {
    fn from_position(position: usize) -> Self;
    fn position(self) -> usize;

    /// Its entry in a list kept in the config's order (tier names, per-tier values).
    fn of<T>(self, list: &[T]) -> Option<&T> {
        list.get(self.position())
    }
}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);

        impl Id for $name {
            fn from_position(position: usize) -> Self {
                $name(position)
            }

            fn position(self) -> usize {
                self.0
            }
        }
    };
}

id!(
    /// A route's position in the config's `routes`.
    RouteId
);
id!(
    /// An upstream's position in the config's `upstreams`.
    UpstreamId
);
id!(
    /// A tier's position in the config's `tiers`.
    TierId
);

/// One value per id of a kind, read by id.
#[derive(Debug)]
pub struct ById<I, T> {
    items: Vec<T>,
    id: PhantomData<fn(I) -> I>,
}

impl<I: Id, T> ById<I, T> {
    pub fn get(&self, id: I) -> Option<&T> {
        self.items.get(id.position())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    pub fn iter_enumerated(&self) -> impl Iterator<Item = (I, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, v)| (I::from_position(i), v))
    }
}

impl<I, T> Default for ById<I, T> {
    fn default() -> Self {
        ById {
            items: Vec::new(),
            id: PhantomData,
        }
    }
}

impl<I: Id, T> std::ops::Index<I> for ById<I, T> {
    type Output = T;

    fn index(&self, id: I) -> &T {
        &self.items[id.position()]
    }
}

impl<I, T> From<Vec<T>> for ById<I, T> {
    fn from(items: Vec<T>) -> Self {
        ById {
            items,
            id: PhantomData,
        }
    }
}

impl<I, T> FromIterator<T> for ById<I, T> {
    fn from_iter<It: IntoIterator<Item = T>>(iter: It) -> Self {
        Vec::from_iter(iter).into()
    }
}

impl<'a, I: Id, T> IntoIterator for &'a ById<I, T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_read_by_its_ids() {
        let names: ById<RouteId, &str> = vec!["a", "b"].into();
        assert_eq!(names[RouteId(1)], "b");
        assert_eq!(names.get(RouteId(2)), None);
        let ids: Vec<RouteId> = names.iter_enumerated().map(|(id, _)| id).collect();
        assert_eq!(ids, [RouteId(0), RouteId(1)]);
        assert_eq!(TierId(1).of(&["free", "gold"]), Some(&"gold"));
    }
}
