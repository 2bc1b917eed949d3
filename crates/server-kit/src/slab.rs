//! The event loops' connection table: values under small indices that are reused.
//!
//! Both event loops must find a connection from what the kernel hands back: the
//! readiness loop from the `Token` of an epoll event, the completion loop from the
//! `user_data` of a completion. Each carries the connection's index in this slab,
//! so finding it is an index into a `Vec` — not a hash, as with a
//! `HashMap<Token, _>` (std's hashes with SipHash: callgrind measured the two
//! lookups per event at about 240 of the readiness loop's 836 user-space
//! instructions per request). tokio keeps its I/O resources in a slab for the same
//! reason.
//!
//! An index is reused once its value is removed. Whatever refers to a connection
//! from outside the slab must make sure it still means the same one: the readiness
//! loop's timers carry a serial number as well; the completion loop frees a
//! connection only when none of its operations is still in the kernel.

/// Values under small, reused indices.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    /// Indices of the empty entries, the last freed on top.
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The index the next [`Slab::insert`] will use.
    pub fn vacant_index(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    /// Stores `value`; returns its index.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                self.entries[index] = Some(value);
                index
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.entries.get(index)?.as_ref()
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.entries.get_mut(index)?.as_mut()
    }

    /// Takes the value out; its index is free for the next insert.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.entries.get_mut(index)?.take()?;
        self.len -= 1;
        self.free.push(index);
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every value with its index.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.entries
            .iter_mut()
            .enumerate()
            .filter_map(|(i, e)| e.as_mut().map(|v| (i, v)))
    }

    /// Drops every value.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.free.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_reused_after_removal() {
        let mut slab = Slab::default();
        let (a, b) = (slab.insert("a"), slab.insert("b"));
        assert_eq!((a, b, slab.len()), (0, 1, 2));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.vacant_index(), a);
        assert_eq!(slab.insert("c"), a);
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        let all: Vec<_> = slab.iter_mut().map(|(i, v)| (i, *v)).collect();
        assert_eq!(all, [(0, "c"), (1, "b")]);
        slab.clear();
        assert!(slab.is_empty() && slab.get(b).is_none());
        assert_eq!(slab.vacant_index(), 0);
    }
}
