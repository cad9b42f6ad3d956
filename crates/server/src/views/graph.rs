//! Directed graphs drawn as inline SVG on the server: a unit's task DAG, a
//! generation plan's jobs, an artifact's lineage.
//!
//! [`svg`] lays the graph out left to right in layers (a small Sugiyama-style
//! pass, written here, no crate) and returns an accessible `<svg role="img">`
//! string:
//!
//! 1. **Clean up.** A node whose id was already seen is dropped (the first one
//!    wins); edges with an unknown end, self-loops and repeated edges are
//!    ignored.
//! 2. **Break cycles.** A depth-first search (nodes and edges in input order,
//!    so the result is deterministic) finds the back edges; for the layout
//!    they are reversed, which leaves a DAG. They are still drawn pointing at
//!    their real target.
//! 3. **Layers.** Each node's layer is its longest path from a source (Kahn's
//!    topological order), so every edge goes from a lower layer to a higher
//!    one, i.e. left to right.
//! 4. **Order within layers.** A few barycenter sweeps, down then up: a node's
//!    key is the mean row of its neighbours on the side being swept from, ties
//!    broken by input order. The ordering with the fewest crossings seen
//!    (counted between edges joining the same pair of layers) is kept.
//! 5. **Coordinates.** All boxes sit on one grid: column = layer, row = the
//!    layer's rows centred on the tallest layer. Row gaps therefore line up
//!    across columns, and an edge spanning several layers runs horizontally
//!    along the gap ("lane") nearest to its ends, so it never crosses a box.
//!    Each hop between columns is a cubic Bézier from the right side of one box
//!    to the left side of the next.
//!
//! The markup carries no `style=` and no script (the pages' CSP forbids both):
//! the look is in `assets/waymark.css` under "Graphs", by class. A node's
//! status is written out as words on its second line and its colour comes from
//! [`super::tone::tone`], so nothing is told by colour alone. A node with a
//! link is wrapped in `<a href>`, which makes it focusable. Every input string
//! goes through [`super::document::esc`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use super::document::esc;
use super::tone::{tone, words};

/// One box of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What edges refer to; unique within a graph (a repeated id is dropped).
    pub id: String,
    /// The first line (truncated when long; the full text shows on hover).
    pub label: String,
    /// After the status on the second line; may be empty.
    pub detail: String,
    /// A status word of the product (`in_review` ...): its tone and its words.
    pub status: String,
    /// The node's page, if it has one.
    pub href: Option<String>,
}

/// An arrow from one node's id to another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

const NODE_W: usize = 200;
const NODE_H: usize = 48;
const LAYER_GAP: usize = 70;
const ROW_GAP: usize = 24;
const PAD: usize = 16;
const PITCH: usize = NODE_H + ROW_GAP;
const STRIDE: usize = NODE_W + LAYER_GAP;
/// Characters of a label shown before it is cut with "…".
const LABEL_MAX: usize = 28;
/// Characters of the status/detail line (smaller type) shown before "…".
const META_MAX: usize = 30;
/// Rounds of (down sweep, up sweep) when ordering the layers.
const SWEEPS: usize = 4;

/// The graph as an inline `<svg>`; `title` is its accessible name.
///
/// An empty graph gives a short paragraph instead. Callers put the result in
/// a `<div class="graph-wrap">`.
pub fn svg(title: &str, nodes: &[Node], edges: &[Edge]) -> String {
    let lay = layout(nodes, edges);
    if lay.nodes.is_empty() {
        return r#"<p class="muted">Nothing to draw.</p>"#.to_string();
    }
    let id = graph_id(title, nodes, edges);
    let width = 2 * PAD + lay.depth * NODE_W + (lay.depth - 1) * LAYER_GAP;
    let height = 2 * PAD + lay.rows * NODE_H + (lay.rows - 1) * ROW_GAP;

    let mut out = String::with_capacity(512 + 400 * lay.nodes.len() + 120 * lay.edges.len());
    // A picture, unless its nodes are links: then a group, so the links stay
    // reachable (an image's children are presentational to assistive tech).
    let role = if nodes
        .iter()
        .any(|n| n.href.as_deref().is_some_and(safe_href))
    {
        "group"
    } else {
        "img"
    };
    // `write!` to a String cannot fail.
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="{role}" aria-labelledby="{id}-title" viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="graph">"#
    );
    let _ = write!(out, r#"<title id="{id}-title">{}</title>"#, esc(title));
    let _ = write!(
        out,
        r#"<defs><marker id="{id}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path class="arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>"#
    );

    let mut lanes = HashMap::new();
    for e in &lay.edges {
        let d = path_data(&route(&lay, e, &mut lanes));
        let _ = write!(
            out,
            r#"<path class="edge" d="{d}" marker-end="url(#{id}-arrow)"/>"#
        );
    }

    // Column by column, top to bottom: the reading (and tab) order.
    for column in &lay.layers {
        for &v in column {
            let node = &nodes[lay.nodes[v]];
            draw_node(&mut out, node, lay.x(v), lay.y(v));
        }
    }
    out.push_str("</svg>");
    out
}

/// One node's markup at (x, y), its box's top-left corner.
fn draw_node(out: &mut String, node: &Node, x: usize, y: usize) {
    let status = words(&node.status);
    let meta = match (status.is_empty(), node.detail.is_empty()) {
        (false, false) => format!("{status} · {}", node.detail),
        (false, true) => status,
        (true, _) => node.detail.clone(),
    };
    let mut hover = node.label.clone();
    if !meta.is_empty() {
        hover.push('\n');
        hover.push_str(&meta);
    }
    let href = node.href.as_deref().filter(|h| safe_href(h));
    if let Some(h) = href {
        let _ = write!(out, r#"<a href="{}">"#, esc(h));
    }
    let _ = write!(
        out,
        r#"<g class="node tone-{tone}"><title>{hover}</title><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" ry="6"/><text class="label" x="{tx}" y="{ly}">{label}</text><text class="meta" x="{tx}" y="{my}">{meta}</text></g>"#,
        tone = tone(&node.status),
        hover = esc(&hover),
        tx = x + 12,
        ly = y + 20,
        my = y + 37,
        label = esc(&truncate(&node.label, LABEL_MAX)),
        meta = esc(&truncate(&meta, META_MAX)),
    );
    if href.is_some() {
        out.push_str("</a>");
    }
}

/// At most `max` characters of `s`, the last one "…" when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Whether a link may be drawn: relative, or http(s)/mailto. Anything else
/// with a scheme (`javascript:`, `data:` ...) is not linked.
fn safe_href(href: &str) -> bool {
    let h = href.trim_start();
    match h.find([':', '/', '?', '#']) {
        Some(i) if h[i..].starts_with(':') => {
            let scheme = h[..i].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// An id for this graph's `<title>` and marker: FNV-1a of the title, the node
/// ids and the edges, so two different graphs on one page do not share ids
/// and the same graph always gets the same markup.
fn graph_id(title: &str, nodes: &[Node], edges: &[Edge]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(title.as_bytes());
    for n in nodes {
        feed(&[0x1f]);
        feed(n.id.as_bytes());
    }
    for e in edges {
        feed(&[0x1e]);
        feed(e.from.as_bytes());
        feed(&[0x1d]);
        feed(e.to.as_bytes());
    }
    format!("graph-{h:016x}")
}

/// The positioned graph (internal; exposed to the tests).
#[derive(Debug)]
struct Layout {
    /// Drawn node → its index in the input.
    nodes: Vec<usize>,
    /// Drawn node → its layer (column).
    layer: Vec<usize>,
    /// Drawn node → its row on the common grid.
    slot: Vec<usize>,
    /// Drawn nodes per layer, top to bottom.
    layers: Vec<Vec<usize>>,
    /// Number of layers (columns).
    depth: usize,
    /// Rows of the grid: the tallest layer's size.
    rows: usize,
    /// Edges to draw, in input order.
    edges: Vec<LaidEdge>,
}

/// An edge in layout direction (`from`'s layer is lower than `to`'s).
#[derive(Debug, Clone, Copy)]
struct LaidEdge {
    from: usize,
    to: usize,
    /// A back edge of a cycle: really drawn from `to` to `from`.
    reversed: bool,
}

impl Layout {
    fn x(&self, v: usize) -> usize {
        PAD + self.layer[v] * STRIDE
    }

    fn y(&self, v: usize) -> usize {
        PAD + self.slot[v] * PITCH
    }
}

/// Steps 1 to 5 of the module's doc.
fn layout(nodes: &[Node], edges: &[Edge]) -> Layout {
    // 1. Nodes (first of each id) and edges (known ends, no loops, no repeats).
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut kept = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if !index.contains_key(node.id.as_str()) {
            index.insert(node.id.as_str(), kept.len());
            kept.push(i);
        }
    }
    let n = kept.len();
    let mut seen = HashSet::new();
    let mut links = Vec::new();
    for e in edges {
        let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) else {
            continue;
        };
        if a != b && seen.insert((a, b)) {
            links.push((a, b));
        }
    }

    // 2. Cycles: reverse the DFS back edges.
    let back = back_edges(n, &links);
    let laid: Vec<LaidEdge> = links
        .iter()
        .zip(&back)
        .map(|(&(a, b), &reversed)| {
            if reversed {
                LaidEdge {
                    from: b,
                    to: a,
                    reversed,
                }
            } else {
                LaidEdge {
                    from: a,
                    to: b,
                    reversed,
                }
            }
        })
        .collect();

    // 3. Layers by longest path from the sources.
    let layer = longest_path_layers(n, &laid);
    let depth = layer.iter().max().map_or(0, |&l| l + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (v, &l) in layer.iter().enumerate() {
        layers[l].push(v);
    }
    let rows = layers.iter().map(Vec::len).max().unwrap_or(0);

    // 4. Order within layers: barycenter sweeps, keeping the best seen.
    let mut preds = vec![Vec::new(); n];
    let mut succs = vec![Vec::new(); n];
    for e in &laid {
        succs[e.from].push(e.to);
        preds[e.to].push(e.from);
    }
    let mut best = layers.clone();
    let mut best_cost = crossings_of(&laid, &layer, &slots(&layers, rows, n));
    for _ in 0..SWEEPS {
        if best_cost == 0 {
            break;
        }
        for l in 1..depth {
            reorder(&mut layers, l, &preds, rows, n);
        }
        let cost = crossings_of(&laid, &layer, &slots(&layers, rows, n));
        if cost < best_cost {
            best_cost = cost;
            best = layers.clone();
        }
        for l in (0..depth.saturating_sub(1)).rev() {
            reorder(&mut layers, l, &succs, rows, n);
        }
        let cost = crossings_of(&laid, &layer, &slots(&layers, rows, n));
        if cost < best_cost {
            best_cost = cost;
            best = layers.clone();
        }
    }

    // 5. Rows on the common grid.
    let slot = slots(&best, rows, n);
    Layout {
        nodes: kept,
        layer,
        slot,
        layers: best,
        depth,
        rows,
        edges: laid,
    }
}

/// Which links are back edges of a depth-first search that starts from each
/// unvisited node in input order and follows links in input order. Iterative,
/// so a long chain cannot overflow the stack.
fn back_edges(n: usize, links: &[(usize, usize)]) -> Vec<bool> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut out = vec![Vec::new(); n];
    for (k, &(a, b)) in links.iter().enumerate() {
        out[a].push((b, k));
    }
    let mut state = vec![NEW; n];
    let mut back = vec![false; links.len()];
    for root in 0..n {
        if state[root] != NEW {
            continue;
        }
        state[root] = OPEN;
        let mut stack = vec![(root, 0usize)];
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            match out[v].get(next) {
                Some(&(w, k)) => {
                    top.1 += 1;
                    match state[w] {
                        NEW => {
                            state[w] = OPEN;
                            stack.push((w, 0));
                        }
                        OPEN => back[k] = true,
                        _ => {}
                    }
                }
                None => {
                    state[v] = DONE;
                    stack.pop();
                }
            }
        }
    }
    back
}

/// Each node's longest path (in edges) from a source, by Kahn's algorithm.
/// The edges form a DAG here; were any node left over it keeps what it has.
fn longest_path_layers(n: usize, edges: &[LaidEdge]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out = vec![Vec::new(); n];
    for e in edges {
        out[e.from].push(e.to);
        indegree[e.to] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut queue: VecDeque<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(v) = queue.pop_front() {
        for &w in &out[v] {
            layer[w] = layer[w].max(layer[v] + 1);
            indegree[w] -= 1;
            if indegree[w] == 0 {
                queue.push_back(w);
            }
        }
    }
    layer
}

/// Each node's row on the grid: its layer is centred on the tallest one
/// (whole rows, so row gaps line up across columns).
fn slots(layers: &[Vec<usize>], rows: usize, n: usize) -> Vec<usize> {
    let mut slot = vec![0; n];
    for column in layers {
        let offset = (rows - column.len()) / 2;
        for (i, &v) in column.iter().enumerate() {
            slot[v] = offset + i;
        }
    }
    slot
}

/// Sort layer `l` by the mean row of each node's `neighbours` (a node with
/// none keeps its own row as key); ties by input order.
fn reorder(layers: &mut [Vec<usize>], l: usize, neighbours: &[Vec<usize>], rows: usize, n: usize) {
    let slot = slots(layers, rows, n);
    let key = |v: usize| -> f64 {
        let ns = &neighbours[v];
        if ns.is_empty() {
            slot[v] as f64
        } else {
            ns.iter().map(|&u| slot[u] as f64).sum::<f64>() / ns.len() as f64
        }
    };
    let mut keyed: Vec<(f64, usize)> = layers[l].iter().map(|&v| (key(v), v)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    layers[l] = keyed.into_iter().map(|(_, v)| v).collect();
}

/// Crossings between edges that join the same pair of layers.
fn crossings_of(edges: &[LaidEdge], layer: &[usize], slot: &[usize]) -> usize {
    let mut groups: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
    for e in edges {
        groups
            .entry((layer[e.from], layer[e.to]))
            .or_default()
            .push((slot[e.from], slot[e.to]));
    }
    let mut count = 0;
    for group in groups.values() {
        for (i, &(a1, b1)) in group.iter().enumerate() {
            for &(a2, b2) in &group[i + 1..] {
                if (a1 < a2 && b1 > b2) || (a1 > a2 && b1 < b2) {
                    count += 1;
                }
            }
        }
    }
    count
}

/// Where the k-th long edge in a lane runs, from the lane's middle: spread
/// within the row gap so edges sharing a lane stay apart, never touching a box.
const LANE_SPREAD: [isize; 5] = [0, -4, 4, -8, 8];

/// The points an edge passes through, from its real source to its real
/// target: right side of the left box, then (for a long edge) along the row
/// gap nearest its ends, to the left side of the right box. `lanes` counts
/// the long edges already put in each gap.
fn route(lay: &Layout, e: &LaidEdge, lanes: &mut HashMap<usize, usize>) -> Vec<(usize, usize)> {
    let (a, b) = (e.from, e.to);
    let start = (lay.x(a) + NODE_W, lay.y(a) + NODE_H / 2);
    let end = (lay.x(b), lay.y(b) + NODE_H / 2);
    let mut points = vec![start];
    if lay.layer[b] > lay.layer[a] + 1 {
        let gap_y = |g: usize| PAD + g * PITCH - ROW_GAP / 2;
        let gap = (0..=lay.rows)
            .min_by_key(|&g| gap_y(g).abs_diff(start.1) + gap_y(g).abs_diff(end.1))
            .unwrap_or(0);
        let used = lanes.entry(gap).or_insert(0);
        let lane = gap_y(gap).saturating_add_signed(LANE_SPREAD[*used % LANE_SPREAD.len()]);
        *used += 1;
        points.push((start.0 + LAYER_GAP, lane));
        points.push((end.0 - LAYER_GAP, lane));
    }
    points.push(end);
    if e.reversed {
        points.reverse();
    }
    points
}

/// SVG path data through `points`: a horizontal line where the height stays
/// the same, else an S-shaped cubic with both control points halfway across.
fn path_data(points: &[(usize, usize)]) -> String {
    let mut d = String::new();
    let mut prev: Option<(usize, usize)> = None;
    for &(x, y) in points {
        match prev {
            None => {
                let _ = write!(d, "M{x} {y}");
            }
            Some((_, py)) if py == y => {
                let _ = write!(d, " L{x} {y}");
            }
            Some((px, py)) => {
                let mx = px.midpoint(x);
                let _ = write!(d, " C{mx} {py} {mx} {y} {x} {y}");
            }
        }
        prev = Some((x, y));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Node {
        Node {
            id: id.to_string(),
            label: id.to_string(),
            detail: String::new(),
            status: "ready".to_string(),
            href: None,
        }
    }

    fn edge(from: &str, to: &str) -> Edge {
        Edge {
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    fn nodes(ids: &[&str]) -> Vec<Node> {
        ids.iter().map(|id| node(id)).collect()
    }

    /// The layer of the node with input id `id`.
    fn layer_of(lay: &Layout, input: &[Node], id: &str) -> usize {
        let v = lay
            .nodes
            .iter()
            .position(|&i| input[i].id == id)
            .expect("node drawn");
        lay.layer[v]
    }

    fn attr<'a>(out: &'a str, name: &str) -> &'a str {
        let start = out.find(&format!(r#"{name}=""#)).expect("attribute") + name.len() + 2;
        let len = out[start..].find('"').expect("closing quote");
        &out[start..start + len]
    }

    #[test]
    fn diamond_is_layered_by_longest_path() {
        let ns = nodes(&["d", "c", "b", "a"]);
        let es = [
            edge("a", "b"),
            edge("a", "c"),
            edge("b", "d"),
            edge("c", "d"),
        ];
        let lay = layout(&ns, &es);
        assert_eq!(layer_of(&lay, &ns, "a"), 0);
        assert_eq!(layer_of(&lay, &ns, "b"), 1);
        assert_eq!(layer_of(&lay, &ns, "c"), 1);
        assert_eq!(layer_of(&lay, &ns, "d"), 2);
        assert_eq!(lay.depth, 3);
        assert_eq!(lay.rows, 2);
        for e in &lay.edges {
            assert!(lay.layer[e.from] < lay.layer[e.to]);
        }
    }

    #[test]
    fn a_cycle_terminates_and_every_node_is_drawn_once() {
        let ns = nodes(&["a", "b", "c"]);
        let es = [
            edge("a", "b"),
            edge("b", "c"),
            edge("c", "a"),
            edge("a", "a"),
        ];
        let lay = layout(&ns, &es);
        assert_eq!(lay.nodes.len(), 3);
        assert_eq!(lay.edges.iter().filter(|e| e.reversed).count(), 1);
        for e in &lay.edges {
            assert!(lay.layer[e.from] < lay.layer[e.to]);
        }
        let out = svg("Loop", &ns, &es);
        assert_eq!(out.matches(r#"<g class="node"#).count(), 3);
        for id in ["a", "b", "c"] {
            assert_eq!(out.matches(&format!(">{id}</text>")).count(), 1, "{id}");
        }
        // The self-loop is not drawn; the three cycle edges are.
        assert_eq!(out.matches(r#"<path class="edge""#).count(), 3);
    }

    #[test]
    fn unknown_edge_ends_are_ignored() {
        let ns = nodes(&["a", "b"]);
        let es = [
            edge("a", "ghost"),
            edge("ghost", "b"),
            edge("x", "y"),
            edge("a", "b"),
        ];
        let lay = layout(&ns, &es);
        assert_eq!(lay.edges.len(), 1);
        let out = svg("Known", &ns, &es);
        assert_eq!(out.matches(r#"<path class="edge""#).count(), 1);
        assert!(!out.contains("ghost"));
    }

    #[test]
    fn markup_in_input_is_escaped() {
        let mut n = node("x");
        n.label = r#"<script>alert("hi")</script>"#.to_string();
        n.detail = "it's <b>".to_string();
        n.href = Some(r#"/a?b=1&c="2" onmouseover="x"#.to_string());
        let out = svg(r#"Plan "<script>"#, &[n], &[]);
        assert!(!out.contains("<script"));
        assert!(!out.contains("<b>"));
        assert!(!out.contains(r#"alert("hi")"#));
        assert!(!out.contains(r#"" onmouseover"#));
        assert!(!out.contains("it's"));
        assert!(out.contains("&lt;script&gt;"));
        assert!(out.contains(r#"href="/a?b=1&amp;c=&quot;2&quot; onmouseover=&quot;x""#));
        assert!(!out.contains("style="));
    }

    #[test]
    fn unsafe_link_schemes_are_not_linked() {
        let mut n = node("x");
        n.href = Some("JavaScript:alert(1)".to_string());
        let out = svg("Links", &[n], &[]);
        assert!(!out.contains("<a "));
        assert!(safe_href("/units/1"));
        assert!(safe_href("https://example.com/a:b"));
        assert!(safe_href("page?at=12:00"));
        assert!(!safe_href(" data:text/html,x"));
    }

    #[test]
    fn long_labels_are_truncated_and_kept_whole_in_a_title() {
        let mut n = node("x");
        n.label = "Écrire la documentation complète du module".to_string();
        let out = svg("Long", &[n.clone()], &[]);
        let shown = truncate(&n.label, LABEL_MAX);
        assert!(shown.chars().count() <= LABEL_MAX);
        assert!(shown.ends_with('…'));
        assert!(out.contains(&format!(
            r#"<text class="label" x="28" y="36">{shown}</text>"#
        )));
        assert!(out.contains(&format!("<title>{}\nready</title>", n.label)));
        assert_eq!(truncate("short", LABEL_MAX), "short");
    }

    #[test]
    fn second_line_has_status_words_and_detail() {
        let mut a = node("a");
        a.status = "in_review".to_string();
        a.detail = "v3".to_string();
        let mut b = node("b");
        b.status = "failed".to_string();
        let out = svg("Lines", &[a, b], &[]);
        assert!(out.contains(">in review · v3</text>"));
        assert!(out.contains(">failed</text>"));
        assert!(!out.contains("failed ·"));
        assert!(out.contains(r#"class="node tone-info""#));
        assert!(out.contains(r#"class="node tone-bad""#));
    }

    #[test]
    fn every_node_with_href_is_inside_a_link() {
        let mut ns = nodes(&["a", "b", "c"]);
        ns[0].href = Some("/a".to_string());
        ns[2].href = Some("/c".to_string());
        let out = svg("Links", &ns, &[edge("a", "b"), edge("b", "c")]);
        assert_eq!(out.matches("<a ").count(), 2);
        assert_eq!(out.matches("</g></a>").count(), 2);
        assert!(out.contains(r#"<a href="/a"><g class="node"#));
        assert!(out.contains(r#"<a href="/c"><g class="node"#));
        let b = out.find(">b</text>").expect("b drawn");
        let before = &out[..b];
        assert!(
            before.rfind("</a>") > before.rfind("<a "),
            "b is not linked"
        );
    }

    #[test]
    fn barycenter_ordering_removes_a_simple_crossing() {
        let ns = nodes(&["a1", "a2", "b1", "b2"]);
        let es = [edge("a1", "b2"), edge("a2", "b1")];
        let lay = layout(&ns, &es);
        assert_eq!(crossings_of(&lay.edges, &lay.layer, &lay.slot), 0);
        let pos = |id: &str| {
            let v = lay
                .nodes
                .iter()
                .position(|&i| ns[i].id == id)
                .expect("drawn");
            lay.slot[v]
        };
        assert!(pos("b2") < pos("b1"));
    }

    #[test]
    fn barycenter_ordering_reduces_crossings_across_layers() {
        // Input order puts every second-layer node opposite its parent.
        let ns = nodes(&["a", "b", "c", "x", "y", "z", "end"]);
        let es = [
            edge("a", "z"),
            edge("b", "y"),
            edge("c", "x"),
            edge("x", "end"),
            edge("y", "end"),
            edge("z", "end"),
        ];
        let lay = layout(&ns, &es);
        assert_eq!(crossings_of(&lay.edges, &lay.layer, &lay.slot), 0);
    }

    #[test]
    fn long_edges_run_along_a_row_gap() {
        let ns = nodes(&["a", "b", "c", "m"]);
        let es = [
            edge("a", "b"),
            edge("b", "c"),
            edge("a", "c"),
            edge("x", "m"),
        ];
        let lay = layout(&ns, &es);
        let long = lay
            .edges
            .iter()
            .find(|e| lay.layer[e.to] - lay.layer[e.from] == 2)
            .expect("long edge");
        let points = route(&lay, long, &mut HashMap::new());
        assert_eq!(points.len(), 4);
        let lane = points[1].1;
        assert_eq!(points[2].1, lane);
        // The lane is in a gap between rows, never inside a box.
        for v in 0..lay.nodes.len() {
            let y = lay.y(v);
            assert!(lane < y || lane > y + NODE_H);
        }
    }

    #[test]
    fn output_is_deterministic_and_ids_differ_by_title() {
        let ns = nodes(&["a", "b", "c", "d"]);
        let es = [
            edge("a", "b"),
            edge("a", "c"),
            edge("b", "d"),
            edge("c", "d"),
            edge("d", "a"),
        ];
        let one = svg("Plan", &ns, &es);
        assert_eq!(one, svg("Plan", &ns, &es));
        let other = svg("Lineage", &ns, &es);
        let id = attr(&one, "aria-labelledby");
        assert_ne!(id, attr(&other, "aria-labelledby"));
        assert!(one.contains(&format!(r#"<title id="{id}">Plan</title>"#)));
        let marker = attr(&one, "marker-end");
        assert!(marker.starts_with("url(#graph-") && marker.ends_with("-arrow)"));
        assert_ne!(marker, attr(&other, "marker-end"));
        assert!(one.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" role="img""#));
        assert!(one.contains(r#"class="graph""#));
        assert!(!one.contains("<script") && !one.contains("style="));
    }

    #[test]
    fn an_empty_graph_says_so() {
        assert_eq!(
            svg("Empty", &[], &[edge("a", "b")]),
            r#"<p class="muted">Nothing to draw.</p>"#
        );
    }

    #[test]
    fn repeated_ids_are_drawn_once() {
        let ns = nodes(&["a", "a", "b"]);
        let out = svg("Twice", &ns, &[edge("a", "b"), edge("a", "b")]);
        assert_eq!(out.matches(r#"<g class="node"#).count(), 2);
        assert_eq!(out.matches(r#"<path class="edge""#).count(), 1);
    }
}
