//! Radix trees over byte prefixes, all nodes in one arena: the route table keeps one
//! tree per route host and one for routes without a host. Walking a path down a tree
//! costs one step per node on the path, whatever the number of prefixes, and every
//! node links to its nearest ancestor that ends a prefix, so the matches of a path
//! are visited deepest first without collecting them.

use crate::vocab::ids::RouteId;

/// A node's place in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NodeId(u32);

struct Node {
    /// The bytes from the parent's end to this node's end.
    label: Box<[u8]>,
    /// The length of the prefix that ends here.
    depth: usize,
    /// The first byte of each child's label, sorted; `children` in the same order.
    child_bytes: Box<[u8]>,
    children: Box<[NodeId]>,
    /// The routes whose prefix ends here, in the order they are tried.
    routes: Box<[RouteId]>,
    /// The nearest ancestor with routes.
    up: Option<NodeId>,
}

/// A node under construction: `items[start..end]` all share the first `depth` bytes.
struct Pending {
    node: NodeId,
    start: usize,
    end: usize,
}

#[derive(Default)]
pub(super) struct Forest {
    nodes: Vec<Node>,
}

impl Forest {
    /// A new tree over `items`: prefixes sorted by their bytes and distinct, each with
    /// its routes in the order they are tried. Its root (the empty prefix).
    pub(super) fn plant(&mut self, items: &[(&[u8], Vec<RouteId>)]) -> NodeId {
        let root = self.push(Box::default(), 0, None);
        // A work list, not recursion: a prefix may be as long as a config allows.
        let mut pending = vec![Pending {
            node: root,
            start: 0,
            end: items.len(),
        }];
        while let Some(Pending { node, mut start, end }) = pending.pop() {
            let depth = self.nodes[node.0 as usize].depth;
            if start < end && items[start].0.len() == depth {
                self.nodes[node.0 as usize].routes = items[start].1.clone().into();
                start += 1;
            }
            let up = if self.nodes[node.0 as usize].routes.is_empty() {
                self.nodes[node.0 as usize].up
            } else {
                Some(node)
            };
            let mut children = Vec::new();
            while start < end {
                // Sorted: the prefixes with the same next byte are a run, and what they
                // all share is what its first and last share.
                let byte = items[start].0[depth];
                let run_end = start + items[start..end].partition_point(|(p, _)| p[depth] == byte);
                let (first, last) = (items[start].0, items[run_end - 1].0);
                let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
                let child = self.push(first[depth..shared].into(), shared, up);
                children.push((byte, child));
                pending.push(Pending {
                    node: child,
                    start,
                    end: run_end,
                });
                start = run_end;
            }
            let parent = &mut self.nodes[node.0 as usize];
            parent.child_bytes = children.iter().map(|(b, _)| *b).collect();
            parent.children = children.iter().map(|(_, c)| *c).collect();
        }
        root
    }

    fn push(&mut self, label: Box<[u8]>, depth: usize, up: Option<NodeId>) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 prefix nodes"));
        self.nodes.push(Node {
            label,
            depth,
            child_bytes: Box::default(),
            children: Box::default(),
            routes: Box::default(),
            up,
        });
        id
    }

    /// The deepest node under `root` with routes whose prefix `path` starts with.
    pub(super) fn deepest(&self, root: NodeId, path: &[u8]) -> Option<NodeId> {
        let mut at = root;
        let mut found = None;
        loop {
            let node = &self.nodes[at.0 as usize];
            if !node.routes.is_empty() {
                found = Some(at);
            }
            let Some(byte) = path.get(node.depth) else {
                return found;
            };
            let Ok(i) = node.child_bytes.binary_search(byte) else {
                return found;
            };
            let child = node.children[i];
            if !path[node.depth..].starts_with(&self.nodes[child.0 as usize].label) {
                return found;
            }
            at = child;
        }
    }

    /// The length of the prefix that ends at `node`.
    pub(super) fn depth(&self, node: NodeId) -> usize {
        self.nodes[node.0 as usize].depth
    }

    /// The routes whose prefix ends at `node`, in the order they are tried.
    pub(super) fn routes(&self, node: NodeId) -> &[RouteId] {
        &self.nodes[node.0 as usize].routes
    }

    /// The nearest ancestor of `node` with routes.
    pub(super) fn up(&self, node: NodeId) -> Option<NodeId> {
        self.nodes[node.0 as usize].up
    }
}
