//! Safe display names for uploaded files.

/// The longest name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// The longest extension kept whole when a long name is shortened, in bytes.
const MAX_EXTENSION_BYTES: usize = 16;

/// A name to show and to put in `Content-Disposition` for an uploaded file called
/// `raw` by its sender.
///
/// Keeps only the last path component (split on `/` and `\`), so no name can
/// point elsewhere; turns whitespace runs (tabs and newlines too) into one space;
/// drops control characters (C0, DEL, C1), bidirectional overrides and isolates,
/// zero-width characters and the characters `<>:"|?*`; trims dots and spaces from
/// both ends (so `..` is gone); puts `_` before a name Windows reserves (`CON`,
/// `NUL`, `COM1`...); and cuts the result to [`MAX_NAME_BYTES`] on a character
/// boundary, keeping the extension. An empty result becomes `upload`.
pub fn sanitize_name(raw: &str) -> String {
    let last = raw
        .split(['/', '\\'])
        .map(clean_component)
        .rfind(|c| !c.is_empty())
        .unwrap_or_default();
    let mut name = shorten(&last);
    if name.is_empty() {
        return "upload".to_owned();
    }
    if is_windows_reserved(&name) {
        name.insert(0, '_');
    }
    name
}

/// One path component with the characters dropped, whitespace collapsed and the
/// ends trimmed.
fn clean_component(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    let mut pending_space = false;
    for c in part.chars() {
        // Tabs and newlines count as spaces; other control characters (NEL
        // among them) are dropped below.
        if c.is_ascii_whitespace() || (c.is_whitespace() && !c.is_control()) {
            pending_space = true;
            continue;
        }
        if is_dropped(c) {
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out.trim_matches(['.', ' ']).to_owned()
}

/// Characters never kept in a name.
fn is_dropped(c: char) -> bool {
    c.is_control()
        || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
        // Bidirectional embeddings, overrides and isolates, and the marks.
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
        // Zero-width space, non-joiner, joiner, word joiner, BOM; soft hyphen.
        || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// `name` cut to [`MAX_NAME_BYTES`], keeping a short extension.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot - 1 <= MAX_EXTENSION_BYTES => {
            (&name[..dot], &name[dot + 1..])
        }
        _ => (name, ""),
    };
    if ext.is_empty() {
        return prefix(stem, MAX_NAME_BYTES)
            .trim_end_matches(['.', ' '])
            .to_owned();
    }
    let room = MAX_NAME_BYTES - ext.len() - 1;
    let stem = prefix(stem, room).trim_end_matches(['.', ' ']);
    if stem.is_empty() {
        ext.to_owned()
    } else {
        format!("{stem}.{ext}")
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether Windows reserves the name (with any extension) for a device.
fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_path_component() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("..\\..\\win.ini"), "win.ini");
        assert_eq!(sanitize_name("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_name("reports/2024/"), "2024");
        assert_eq!(sanitize_name("/"), "upload");
        assert_eq!(sanitize_name("a/.."), "a");
        assert_eq!(sanitize_name(".."), "upload");
    }

    #[test]
    fn drops_controls_and_collapses_whitespace() {
        assert_eq!(sanitize_name("a\u{0}b\nc.pdf"), "ab c.pdf");
        assert_eq!(sanitize_name("  my \t\t report  .txt "), "my report .txt");
        assert_eq!(sanitize_name("bell\u{7}\u{7f}\u{85}\u{9b}.md"), "bell.md");
    }

    #[test]
    fn drops_bidi_overrides_and_zero_width_characters() {
        // "fdp.exe" after a right-to-left override shows as "exe.pdf".
        assert_eq!(sanitize_name("\u{202e}fdp.exe"), "fdp.exe");
        assert_eq!(sanitize_name("in\u{2066}voice\u{2069}.pdf"), "invoice.pdf");
        assert_eq!(
            sanitize_name("zero\u{200b}\u{200d}\u{feff}width.txt"),
            "zerowidth.txt"
        );
    }

    #[test]
    fn drops_reserved_punctuation() {
        assert_eq!(sanitize_name("<script>.txt"), "script.txt");
        assert_eq!(sanitize_name("what?*|\":.csv"), "what.csv");
    }

    #[test]
    fn dots_and_empty_names_become_upload() {
        assert_eq!(sanitize_name("..."), "upload");
        assert_eq!(sanitize_name(""), "upload");
        assert_eq!(sanitize_name(" . . "), "upload");
        assert_eq!(sanitize_name("\u{202e}\u{200b}"), "upload");
        assert_eq!(sanitize_name(".hidden"), "hidden");
        assert_eq!(sanitize_name("name."), "name");
    }

    #[test]
    fn windows_device_names_are_prefixed() {
        assert_eq!(sanitize_name("CON"), "_CON");
        assert_eq!(sanitize_name("nul.txt"), "_nul.txt");
        assert_eq!(sanitize_name("com1.pdf"), "_com1.pdf");
        assert_eq!(sanitize_name("console.txt"), "console.txt");
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "a".repeat(1000));
        let name = sanitize_name(&long);
        assert_eq!(name.len(), MAX_NAME_BYTES);
        assert!(name.ends_with("aaa.pdf"));

        let wide = format!("{}.docx", "é".repeat(1000));
        let name = sanitize_name(&wide);
        assert!(name.len() <= MAX_NAME_BYTES);
        assert!(name.ends_with("é.docx"), "{name}");

        let no_ext = "ü".repeat(1000);
        let name = sanitize_name(&no_ext);
        assert!(name.len() <= MAX_NAME_BYTES && name.len() >= MAX_NAME_BYTES - 1);
        assert!(name.chars().all(|c| c == 'ü'));

        let long_ext = format!("x.{}", "y".repeat(1000));
        assert_eq!(sanitize_name(&long_ext).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn ordinary_names_are_unchanged() {
        for name in [
            "report.pdf",
            "Q3 numbers.xlsx",
            "naïve café.md",
            "日本語.txt",
        ] {
            assert_eq!(sanitize_name(name), name);
        }
    }
}
