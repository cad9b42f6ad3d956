//! Directed graphs given as adjacency lists: cycle detection for pack requirements
//! and plan job dependencies.

use std::collections::BTreeMap;

/// A cycle in `edges` (each node maps to the nodes it depends on), as the list of
/// nodes along it with the first repeated at the end (`a -> b -> a`), or `None`
/// when the graph is acyclic. Nodes missing from the map have no dependencies.
pub fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = edges.keys().map(|k| (*k, Mark::Unseen)).collect();
    for start in edges.keys() {
        if marks.get(start) != Some(&Mark::Unseen) {
            continue;
        }
        // Iterative depth-first search: (node, index of the next dependency to visit).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = stack.last_mut() {
            let deps = edges.get(*node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(dep) = deps.get(*next) {
                *next += 1;
                match marks.get(dep).copied().unwrap_or(Mark::Unseen) {
                    Mark::OnPath => {
                        let from = stack.iter().position(|(n, _)| n == dep).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[from..].iter().map(|(n, _)| *n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    Mark::Unseen => {
                        marks.insert(dep, Mark::OnPath);
                        stack.push((dep, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(pairs: &[(&'a str, &[&'a str])]) -> BTreeMap<&'a str, Vec<&'a str>> {
        pairs.iter().map(|(k, v)| (*k, v.to_vec())).collect()
    }

    #[test]
    fn acyclic_graphs_have_no_cycle() {
        let g = graph(&[
            ("intake", &[]),
            ("strategy", &["intake"]),
            ("creatives", &["strategy"]),
            ("execution", &["strategy", "creatives"]),
            (
                "delivery",
                &["intake", "strategy", "creatives", "execution"],
            ),
        ]);
        assert_eq!(find_cycle(&g), None);
    }

    #[test]
    fn cycles_are_named_along_their_path() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        assert_eq!(find_cycle(&g), Some(vec!["a", "b", "c", "a"]));
        let own = graph(&[("a", &["a"])]);
        assert_eq!(find_cycle(&own), Some(vec!["a", "a"]));
    }
}
