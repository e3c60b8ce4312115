//! The book's own test: it builds `book/` with mdBook into a temporary directory and checks
//! what mdBook only logs, or does not look at:
//!
//! 1. every chapter named in `SUMMARY.md` has its file;
//! 2. every `{{#include}}` / `{{#rustdoc_include}}` names a file that exists, and an anchor
//!    that file has (both `ANCHOR:` and `ANCHOR_END:` lines);
//! 3. every internal link works: a relative `.md` link names a chapter of the book, and a
//!    `#fragment` names a heading id that mdBook will give that chapter;
//! 4. every reference to a file under `book/src/generated/` names a file that exists.
//!
//! The checker is tested on small broken books built in temporary directories (module
//! `checker_tests`), so that each check is known to be able to fail.
//!
//! The `exercises` module prints the answers to the book's exercises, computed with the
//! workbook's own code: `cargo test --test book exercise -- --nocapture`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use mdbook_driver::MDBook;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// One thing wrong with a book.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// `SUMMARY.md` names a chapter file that does not exist.
    MissingChapter { entry: String },
    /// An include names a file that does not exist (outside `generated/`).
    MissingInclude { chapter: String, target: String },
    /// An include names an anchor that its file does not have.
    MissingAnchor {
        chapter: String,
        target: String,
        anchor: String,
    },
    /// A relative link or fragment that leads nowhere.
    BrokenLink {
        chapter: String,
        link: String,
        why: String,
    },
    /// A file under `src/generated/` is referenced but missing: run its generating command.
    MissingGenerated { chapter: String, target: String },
    /// What mdBook rendered is not what a reader should see (raw markdown, a dead link in the
    /// HTML, a table without its scroll container, a chapter number the sidebar does not have).
    Rendered { chapter: String, why: String },
    /// An `{{#include}}` sits inside a list item: mdBook indents only its first line, so the
    /// first included line in column 0 ends the list and the fence (review finding A1).
    IncludeInList { chapter: String, line: usize },
    /// mdBook itself failed to load or build the book.
    Build(String),
}

impl Problem {
    fn kind(&self) -> &'static str {
        match self {
            Problem::MissingChapter { .. } => "missing-chapter",
            Problem::MissingInclude { .. } => "missing-include",
            Problem::MissingAnchor { .. } => "missing-anchor",
            Problem::BrokenLink { .. } => "broken-link",
            Problem::MissingGenerated { .. } => "missing-generated",
            Problem::Rendered { .. } => "rendered",
            Problem::IncludeInList { .. } => "include-in-list",
            Problem::Build(_) => "build",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingChapter { entry } => {
                write!(f, "SUMMARY.md names `{entry}`, which does not exist")
            }
            Problem::MissingInclude { chapter, target } => {
                write!(f, "{chapter}: included file `{target}` does not exist")
            }
            Problem::MissingAnchor {
                chapter,
                target,
                anchor,
            } => write!(
                f,
                "{chapter}: `{target}` has no `ANCHOR: {anchor}` / `ANCHOR_END: {anchor}` pair"
            ),
            Problem::BrokenLink { chapter, link, why } => {
                write!(f, "{chapter}: link `{link}` is broken: {why}")
            }
            Problem::MissingGenerated { chapter, target } => write!(
                f,
                "{chapter}: generated file `{target}` is missing (run the command the chapter names)"
            ),
            Problem::Rendered { chapter, why } => write!(f, "{chapter} (rendered HTML): {why}"),
            Problem::IncludeInList { chapter, line } => write!(
                f,
                "{chapter}:{line}: an {{{{#include}}}} inside a list item; move the fence to column 0"
            ),
            Problem::Build(e) => write!(f, "mdBook failed: {e}"),
        }
    }
}

/// The parser options mdBook 0.5 uses for chapters (`mdbook-markdown`'s `new_cmark_parser`
/// with its defaults: smart punctuation, definition lists and GFM admonitions on).
fn mdbook_options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_SMART_PUNCTUATION
        | Options::ENABLE_DEFINITION_LIST
        | Options::ENABLE_GFM
}

/// An id from heading text, as `mdbook-html`'s `id_from_content` makes it: trim, lowercase,
/// keep alphanumerics, `_` and `-`, turn whitespace into `-`, drop everything else.
fn id_from_content(content: &str) -> String {
    content
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// Makes `id` unique as `mdbook-html`'s `unique_id` does: `-1`, `-2`, ... on repeats.
fn unique_id(id: &str, used: &mut HashSet<String>) -> String {
    if used.insert(id.to_string()) {
        return id.to_string();
    }
    (1..)
        .map(|n| format!("{id}-{n}"))
        .find(|c| used.insert(c.clone()))
        .expect("an unused suffix exists")
}

/// The ids mdBook gives a chapter's headings (and definition-list terms, which share the
/// counter). An explicit `{#id}` is kept as written and, as in mdBook, not counted.
fn heading_ids(markdown: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut used = HashSet::new();
    let mut current: Option<(Option<String>, String)> = None;
    for event in Parser::new_ext(markdown, mdbook_options()) {
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                current = Some((id.map(|i| i.to_string()), String::new()));
            }
            Event::Start(Tag::DefinitionListTitle) => current = Some((None, String::new())),
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) | Event::End(TagEnd::DefinitionListTitle) => {
                if let Some((explicit, text)) = current.take() {
                    ids.push(match explicit {
                        Some(id) => id,
                        None => unique_id(&id_from_content(&text), &mut used),
                    });
                }
            }
            _ => {}
        }
    }
    ids
}

/// An `{{#include path[:anchor|:lines]}}` or `{{#rustdoc_include ...}}` found in a chapter.
#[derive(Debug, PartialEq, Eq)]
struct Include {
    path: String,
    anchor: Option<String>,
}

/// Finds include directives the way mdBook's link preprocessor does: in the raw text (code
/// blocks and HTML comments included), skipping `\{{#...}}` escapes.
fn find_includes(text: &str) -> Vec<Include> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        let escaped = rest[..at].ends_with('\\');
        let after = &rest[at + 2..];
        let Some(close) = after.find("}}") else { break };
        let inner = after[..close].trim_start();
        rest = &after[close + 2..];
        if escaped {
            continue;
        }
        let Some(directive) = inner.strip_prefix('#') else {
            continue;
        };
        let mut parts = directive.splitn(2, char::is_whitespace);
        let kind = parts.next().unwrap_or("");
        if kind != "include" && kind != "rustdoc_include" {
            continue;
        }
        let Some(arg) = parts.next().map(str::trim) else {
            continue;
        };
        let arg = arg.split_whitespace().next().unwrap_or("");
        let (path, spec) = match arg.split_once(':') {
            Some((p, s)) => (p, Some(s)),
            None => (arg, None),
        };
        // A spec that starts with a number, or is empty, is a line range; else an anchor.
        let anchor = spec
            .and_then(|s| s.split(':').next())
            .filter(|s| !s.is_empty() && s.parse::<usize>().is_err())
            .map(str::to_string);
        out.push(Include {
            path: path.to_string(),
            anchor,
        });
    }
    out
}

/// Whether `file_text` has both `ANCHOR: name` and `ANCHOR_END: name` lines, matched as
/// mdBook matches them (`ANCHOR:\s*name` with a name of word characters and `-`).
fn has_anchor(file_text: &str, name: &str) -> bool {
    let marks = |tag: &str| {
        file_text.lines().any(|l| {
            l.match_indices(tag).any(|(i, _)| {
                // `ANCHOR:` must not be the tail of `ANCHOR_END:`, which has no `:` there.
                let found = l[i + tag.len()..].trim_start();
                let word: String = found
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                    .collect();
                word == name
            })
        })
    };
    marks("ANCHOR:") && marks("ANCHOR_END:")
}

/// Joins `rel` to `base` and folds `.` and `..` without touching the disk.
fn join_normalized(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether a link has a scheme (`https:`, `mailto:`) and so is not ours to check.
fn is_external(link: &str) -> bool {
    let mut chars = link.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && link.split_once(':').is_some_and(|(s, _)| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        })
        || link.starts_with("//")
}

/// The chapter files `SUMMARY.md` names, relative to `src`, in order (drafts skipped).
fn summary_entries(src: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(src.join("SUMMARY.md"))
        .map_err(|e| format!("cannot read SUMMARY.md: {e}"))?;
    Ok(Parser::new_ext(&text, mdbook_options())
        .filter_map(|e| match e {
            Event::Start(Tag::Link { dest_url, .. }) if !dest_url.is_empty() => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect())
}

/// Links and images of a chapter, as written.
fn links(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, mdbook_options())
        .filter_map(|e| match e {
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => Some(dest_url.to_string()),
            _ => None,
        })
        .collect()
}

/// Checks the book at `root` (the folder with `book.toml`, sources in `root/src`), builds it
/// into a temporary directory, and returns every problem found.
fn check_book(root: &Path) -> Vec<Problem> {
    let src = root.join("src");
    let generated = src.join("generated");
    let mut problems = Vec::new();

    let entries = match summary_entries(&src) {
        Ok(e) => e,
        Err(e) => return vec![Problem::Build(e)],
    };
    let mut chapters: Vec<PathBuf> = Vec::new();
    for entry in &entries {
        let path = join_normalized(&src, entry);
        if path.is_file() {
            chapters.push(path);
        } else {
            problems.push(Problem::MissingChapter {
                entry: entry.clone(),
            });
        }
    }
    let chapter_set: HashSet<&PathBuf> = chapters.iter().collect();
    let mut id_cache: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut ids_of = |path: &Path| -> HashSet<String> {
        id_cache
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                let text = fs::read_to_string(path).unwrap_or_default();
                heading_ids(&text).into_iter().collect()
            })
            .clone()
    };

    for chapter in &chapters {
        let name = chapter
            .strip_prefix(&src)
            .unwrap_or(chapter)
            .display()
            .to_string();
        let text = match fs::read_to_string(chapter) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::Build(format!("{name}: {e}")));
                continue;
            }
        };
        let dir = chapter.parent().unwrap_or(&src).to_path_buf();

        problems.extend(
            includes_in_lists(&text)
                .into_iter()
                .map(|line| Problem::IncludeInList {
                    chapter: name.clone(),
                    line,
                }),
        );

        for inc in find_includes(&text) {
            let target = join_normalized(&dir, &inc.path);
            if !target.is_file() {
                problems.push(if target.starts_with(&generated) {
                    Problem::MissingGenerated {
                        chapter: name.clone(),
                        target: inc.path.clone(),
                    }
                } else {
                    Problem::MissingInclude {
                        chapter: name.clone(),
                        target: inc.path.clone(),
                    }
                });
                continue;
            }
            if let Some(anchor) = &inc.anchor {
                let body = fs::read_to_string(&target).unwrap_or_default();
                if !has_anchor(&body, anchor) {
                    problems.push(Problem::MissingAnchor {
                        chapter: name.clone(),
                        target: inc.path.clone(),
                        anchor: anchor.clone(),
                    });
                }
            }
        }

        for link in links(&text) {
            if is_external(&link) {
                continue;
            }
            let broken = |why: String| Problem::BrokenLink {
                chapter: name.clone(),
                link: link.clone(),
                why,
            };
            let (path, fragment) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                chapter.clone()
            } else {
                join_normalized(&dir, path)
            };
            if !path.is_empty() && !target.exists() {
                problems.push(if target.starts_with(&generated) {
                    Problem::MissingGenerated {
                        chapter: name.clone(),
                        target: path.to_string(),
                    }
                } else {
                    broken("no such file".to_string())
                });
                continue;
            }
            let is_md = target.extension().is_some_and(|e| e == "md");
            if is_md && !chapter_set.contains(&target) {
                problems.push(broken("not a chapter in SUMMARY.md".to_string()));
                continue;
            }
            if let Some(fragment) = fragment {
                if !is_md {
                    continue; // fragments into other files (SVG ids) are not checked
                }
                if !ids_of(&target).contains(fragment) {
                    problems.push(broken(format!("no heading with id `{fragment}`")));
                }
            }
        }
    }

    // mdBook's own load and build, into a temporary directory. Skipped when a chapter is
    // missing: with `create-missing` on, loading would create it in the source tree.
    if problems
        .iter()
        .all(|p| !matches!(p, Problem::MissingChapter { .. }))
    {
        match build_into_temp(root) {
            Ok((book, out)) => problems.extend(check_rendered(&book, out.path())),
            Err(e) => problems.push(Problem::Build(e)),
        }
    }
    problems
}

/// Lines (1-based) of `{{#include}}` directives indented under a list item's fence.
fn includes_in_lists(markdown: &str) -> Vec<usize> {
    markdown
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(' ') && l.trim_start().starts_with("{{#include"))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The `<main>` element of a rendered page: what the reader sees, without sidebar and scripts.
fn main_of(html: &str) -> &str {
    let start = html.find("<main>").unwrap_or(0);
    let end = html[start..]
        .find("</main>")
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

/// Values of every `attr="..."` in `html`.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!(" {attr}=\"");
    html.match_indices(&pat)
        .filter_map(|(i, _)| {
            let rest = &html[i + pat.len()..];
            rest.find('"').map(|e| &rest[..e])
        })
        .collect()
}

/// Decodes the few entities mdBook writes into attribute values and link text.
fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Checks what mdBook rendered into `out` (the built book): every chapter's `<main>` has no
/// raw fence markers or `{{#`, every relative link and fragment resolves against the ids of
/// the rendered HTML, every table sits in mdBook's `table-wrapper` scroll container, and a
/// link whose text is "chapter N" leads to the chapter the sidebar numbers N.
fn check_rendered(book: &MDBook, out: &Path) -> Vec<Problem> {
    let html_dir = out.join("html");
    let html_dir = if html_dir.is_dir() {
        html_dir
    } else {
        out.to_path_buf()
    };
    // The sidebar's number of each chapter, by its rendered file ("x86-pmu.html" -> 2).
    let mut numbers: HashMap<PathBuf, String> = HashMap::new();
    let mut pages: Vec<PathBuf> = Vec::new();
    for ch in book.book.chapters() {
        if let Some(path) = &ch.path {
            let html = path.with_extension("html");
            if let Some(n) = &ch.number {
                numbers.insert(
                    html.clone(),
                    n.to_string().trim_end_matches('.').to_string(),
                );
            }
            pages.push(html);
        }
    }
    let mut ids: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut problems = Vec::new();
    for page in &pages {
        let name = page.display().to_string();
        let html = match fs::read_to_string(html_dir.join(page)) {
            Ok(h) => h,
            Err(e) => {
                problems.push(Problem::Rendered {
                    chapter: name,
                    why: format!("not rendered: {e}"),
                });
                continue;
            }
        };
        let main = main_of(&html);
        let mut bad = |why: String| {
            problems.push(Problem::Rendered {
                chapter: name.clone(),
                why,
            })
        };
        for marker in ["```", "{{#"] {
            if main.contains(marker) {
                bad(format!(
                    "raw `{marker}` left in the page (a listing split out of its list?)"
                ));
            }
        }
        let tables = main.matches("<table").count();
        let wrapped = main
            .match_indices("<table")
            .filter(|(i, _)| {
                main[..*i]
                    .trim_end()
                    .ends_with("<div class=\"table-wrapper\">")
            })
            .count();
        if tables != wrapped {
            bad(format!(
                "{} of {tables} tables lack their scroll container",
                tables - wrapped
            ));
        }
        for href in attr_values(main, "href") {
            let href = unescape(href);
            if is_external(&href) {
                continue;
            }
            let (path, fragment) = match href.split_once('#') {
                Some((p, f)) => (p.to_string(), Some(f.to_string())),
                None => (href.clone(), None),
            };
            let target = link_target(page, &path);
            let file = html_dir.join(&target);
            if !file.exists() {
                bad(format!("link `{href}` leads to no rendered file"));
                continue;
            }
            if let Some(fragment) = fragment {
                if target.extension().is_some_and(|e| e == "html") {
                    let set = ids.entry(target.clone()).or_insert_with(|| {
                        let text = fs::read_to_string(&file).unwrap_or_default();
                        attr_values(&text, "id").into_iter().map(unescape).collect()
                    });
                    if !set.contains(&fragment) {
                        bad(format!(
                            "link `{href}`: the rendered page has no id `{fragment}`"
                        ));
                    }
                }
            }
        }
        // Links whose text is "chapter N" / "Chapter N": N must be the sidebar's number.
        for (i, _) in main.match_indices("<a href=\"") {
            let rest = &main[i + 9..];
            let Some(q) = rest.find('"') else { continue };
            let href = unescape(&rest[..q]);
            let Some(gt) = rest.find('>') else { continue };
            let Some(end) = rest[gt..].find("</a>") else {
                continue;
            };
            let text = rest[gt + 1..gt + end].to_lowercase();
            let Some(n) = text.strip_prefix("chapter ") else {
                continue;
            };
            let target = link_target(page, href.split('#').next().unwrap_or(""));
            match numbers.get(&target) {
                Some(m) if m == n.trim() => {}
                Some(m) => bad(format!(
                    "link text `{text}` leads to the sidebar's chapter {m}"
                )),
                None => bad(format!("link text `{text}` leads to an unnumbered page")),
            }
        }
    }
    problems
}

/// The rendered page (relative to the HTML root) that a link's `path` on `page` leads to; an
/// empty path is the page itself.
fn link_target(page: &Path, path: &str) -> PathBuf {
    if path.is_empty() {
        page.to_path_buf()
    } else {
        join_normalized(page.parent().unwrap_or(Path::new("")), path)
    }
}

/// Where a build goes: a fresh temporary directory, or the directory named by
/// `VPMU_BOOK_OUT` (which `book/check-render.sh` sets, to open the pages in Chromium).
enum Output {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Output {
    fn path(&self) -> &Path {
        match self {
            Output::Temp(t) => t.path(),
            Output::Kept(p) => p,
        }
    }
}

/// Loads the book with `MDBook::load` and builds it into its [`Output`]; both are returned so
/// that the caller may look at the rendered HTML without loading the book again.
fn build_into_temp(root: &Path) -> Result<(MDBook, Output), String> {
    let out = match std::env::var_os("VPMU_BOOK_OUT") {
        Some(dir) if root == book_root() => Output::Kept(PathBuf::from(dir)),
        _ => Output::Temp(tempfile::tempdir().map_err(|e| e.to_string())?),
    };
    let mut book = MDBook::load(root).map_err(|e| format!("load: {e:#}"))?;
    book.config.build.build_dir = out.path().to_path_buf();
    book.build().map_err(|e| format!("build: {e:#}"))?;
    Ok((book, out))
}

fn book_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book")
}

#[test]
fn the_book_builds_and_all_its_references_resolve() {
    let problems = check_book(&book_root());
    assert!(
        problems.is_empty(),
        "{} problem(s) in book/:\n{}",
        problems.len(),
        problems
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn book_toml_is_as_agreed() {
    let toml = fs::read_to_string(book_root().join("book.toml")).unwrap();
    assert!(toml.contains("create-missing = false"), "{toml}");
    assert!(toml.contains("vpmu-workbook developers"), "{toml}");
    assert!(
        !toml.contains("[preprocessor."),
        "no extra preprocessors: {toml}"
    );
}

/// Small books with one kind of breakage each, built in temporary directories.
mod checker_tests {
    use super::*;

    /// Writes `files` (path under the book root, contents) and returns the book's root.
    fn mini_book(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let toml =
            "[book]\ntitle = \"mini\"\nauthors = [\"t\"]\n\n[build]\ncreate-missing = false\n";
        fs::write(dir.path().join("book.toml"), toml).unwrap();
        for (path, body) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        dir
    }

    fn kinds(problems: &[Problem]) -> Vec<&'static str> {
        problems.iter().map(Problem::kind).collect()
    }

    const GOOD_SUMMARY: &str = "# Summary\n\n- [A](a.md)\n- [B](sub/b.md)\n";
    const CODE: &str = "fn a() {}\n// ANCHOR: here\nfn b() {}\n// ANCHOR_END: here\n";

    #[test]
    fn a_sound_mini_book_has_no_problems() {
        let book = mini_book(&[
            ("src/SUMMARY.md", GOOD_SUMMARY),
            (
                "src/a.md",
                "# A\n\n## Two words\n\nSee [b](sub/b.md#deep-part), [here](#two-words), \
                 [web](https://example.invalid/x.md).\n\n```rust\n{{#include code.rs:here}}\n```\n\n\
                 Lines: {{#include code.rs:2:3}}\n",
            ),
            ("src/code.rs", CODE),
            ("src/sub/b.md", "# B\n\n### Deep part\n\nBack to [A](../a.md#a).\n"),
        ]);
        assert_eq!(check_book(book.path()), vec![]);
    }

    #[test]
    fn reports_a_chapter_without_its_file() {
        let book = mini_book(&[
            (
                "src/SUMMARY.md",
                "# Summary\n\n- [A](a.md)\n- [Gone](gone.md)\n",
            ),
            ("src/a.md", "# A\n"),
        ]);
        let problems = check_book(book.path());
        assert_eq!(kinds(&problems), ["missing-chapter"], "{problems:?}");
        assert!(
            !book.path().join("src/gone.md").exists(),
            "must not create it"
        );
    }

    #[test]
    fn reports_an_include_of_a_missing_file() {
        let book = mini_book(&[
            ("src/SUMMARY.md", "# Summary\n\n- [A](a.md)\n"),
            (
                "src/a.md",
                "# A\n\n```rust\n{{#rustdoc_include ../nowhere.rs:x}}\n```\n",
            ),
        ]);
        // The unresolved directive is also left raw in the page.
        assert_eq!(
            kinds(&check_book(book.path())),
            ["missing-include", "rendered"]
        );
    }

    #[test]
    fn reports_an_include_of_a_missing_anchor() {
        let book = mini_book(&[
            ("src/SUMMARY.md", "# Summary\n\n- [A](a.md)\n"),
            (
                "src/a.md",
                "# A\n\n```rust\n{{#include code.rs:there}}\n```\n",
            ),
            ("src/code.rs", CODE),
        ]);
        let problems = check_book(book.path());
        assert_eq!(kinds(&problems), ["missing-anchor"]);
        // A start line without its end is not an anchor either.
        let book = mini_book(&[
            ("src/SUMMARY.md", "# Summary\n\n- [A](a.md)\n"),
            ("src/a.md", "# A\n\n{{#include code.rs:half}}\n"),
            ("src/code.rs", "// ANCHOR: half\nfn x() {}\n"),
        ]);
        assert_eq!(kinds(&check_book(book.path())), ["missing-anchor"]);
    }

    #[test]
    fn reports_broken_links_and_fragments() {
        let book = mini_book(&[
            ("src/SUMMARY.md", GOOD_SUMMARY),
            (
                "src/a.md",
                "# A\n\n[1](nowhere.md) [2](sub/b.md#no-such) [3](#missing) [4](orphan.md) \
                 [5](pic.svg)\n",
            ),
            ("src/sub/b.md", "# B\n"),
            ("src/orphan.md", "# Not in the summary\n"),
        ]);
        let problems = check_book(book.path());
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        // Each link is found twice: in the source, and again in the rendered HTML.
        let mut expected = vec!["broken-link"; 5];
        expected.extend(["rendered"; 5]);
        assert_eq!(kinds(&problems), expected, "{text:#?}");
        for link in [
            "nowhere.html",
            "no-such",
            "#missing",
            "orphan.html",
            "pic.svg",
        ] {
            assert!(
                text.iter()
                    .any(|t| t.contains("rendered HTML") && t.contains(link)),
                "the HTML check misses `{link}`: {text:#?}"
            );
        }
    }

    /// Review finding A1 in small: a listing included inside a list item. The included file
    /// has lines in column 0, which end the item and the fence, so raw markdown is left in
    /// the page. Both the source check and the rendered-HTML check must say so.
    #[test]
    fn reports_an_include_split_out_of_its_list() {
        let book = mini_book(&[
            ("src/SUMMARY.md", "# Summary\n\n- [A](a.md)\n"),
            (
                "src/a.md",
                "# A\n\n- an item with a listing:\n\n  ```rust\n  {{#include code.rs:here}}\n  ```\n\
                 - next item\n\n```text\nafter\n```\n",
            ),
            ("src/code.rs", "// ANCHOR: here\nfn b() {\n    1\n}\n// ANCHOR_END: here\n"),
        ]);
        let problems = check_book(book.path());
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(kinds(&problems).contains(&"include-in-list"), "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.contains("rendered HTML") && t.contains("raw `")),
            "the rendered page keeps raw markdown: {text:#?}"
        );
    }

    /// A link that says "chapter N" must lead to the page the sidebar numbers N.
    #[test]
    fn reports_a_chapter_number_that_the_sidebar_does_not_have() {
        let book = mini_book(&[
            (
                "src/SUMMARY.md",
                "# Summary\n\n[Intro](i.md)\n\n- [A](a.md)\n- [B](b.md)\n",
            ),
            (
                "src/i.md",
                "# Intro\n\nSee [chapter 2](a.md) and [chapter 2](b.md).\n",
            ),
            ("src/a.md", "# A\n"),
            ("src/b.md", "# B\n"),
        ]);
        let problems = check_book(book.path());
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(kinds(&problems), ["rendered"], "{text:#?}");
        assert!(text[0].contains("sidebar's chapter 1"), "{text:#?}");
    }

    #[test]
    fn reports_missing_generated_files() {
        let book = mini_book(&[
            ("src/SUMMARY.md", "# Summary\n\n- [A](a.md)\n"),
            (
                "src/a.md",
                "# A\n\n{{#include generated/table.md}}\n\n![plot](generated/plot.svg)\n\n\
                 <!-- TODO(include): generated/later.md, not yet referenced -->\n",
            ),
        ]);
        assert_eq!(
            kinds(&check_book(book.path())),
            ["missing-generated", "missing-generated", "rendered"]
        );
    }

    #[test]
    fn heading_ids_match_what_mdbook_renders() {
        let chapter = "# Intro: the `IA32_PMCx` MSRs\n\n## Don't -- panic\n\n## Repeat\n\n\
                       ## Repeat\n\n## Custom {#my-id}\n\n## Über 2.16×\n";
        let ids = heading_ids(chapter);
        assert_eq!(
            ids,
            [
                "intro-the-ia32_pmcx-msrs",
                "dont--panic",
                "repeat",
                "repeat-1",
                "my-id",
                "über-216"
            ]
        );
        let book = mini_book(&[
            ("src/SUMMARY.md", "# Summary\n\n- [A](a.md)\n"),
            ("src/a.md", chapter),
        ]);
        let (_, out) = build_into_temp(book.path()).unwrap();
        let html = fs::read_to_string(out.path().join("a.html")).unwrap();
        for id in ids {
            assert!(
                html.contains(&format!("id=\"{id}\"")),
                "{id} not in the HTML"
            );
        }
    }

    #[test]
    fn include_scanner_reads_specs_like_mdbook() {
        let found = find_includes(
            "{{#include a.rs}} {{ #include b.rs:anc }} {{#include c.rs:3:9}} \
             {{#include d.rs::4}} \\{{#include e.rs:x}} {{#title T}}",
        );
        let got: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|i| (i.path.as_str(), i.anchor.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("a.rs", None),
                ("b.rs", Some("anc")),
                ("c.rs", None),
                ("d.rs", None)
            ]
        );
    }
}

/// Answers to the book's exercises, computed with the workbook's code. Run
/// `cargo test --test book exercise -- --nocapture` to see them.
mod exercises {
    use vmm::caps::{PmuCaps, ARCH_EVENTS};
    use vmm::msr;

    /// IA32_PERFEVTSELx bits, SDM vol. 3B, "Architectural Performance Monitoring Version 1".
    const USR: u64 = 1 << 16;
    const OS: u64 = 1 << 17;
    const INT: u64 = 1 << 20;
    const EN: u64 = 1 << 22;

    fn eventsel(name: &str) -> u64 {
        let e = ARCH_EVENTS.iter().find(|e| e.name == name).unwrap();
        u64::from(e.event) | u64::from(e.umask) << 8
    }

    #[test]
    fn exercise_ch2_cpuid_leaf_0xa() {
        let caps = PmuCaps::with_gp(2);
        let leaf = caps.cpuid_0xa();
        println!(
            "ch2.1: CPUID.0AH for 2 GP counters: EAX={:#010x} EDX={:#x}",
            leaf.eax, leaf.edx
        );
        assert_eq!(leaf.eax, 0x0730_0202);
        assert_eq!(leaf.edx, 0x603);
    }

    #[test]
    fn exercise_ch2_eventsel_and_preload() {
        let sel = eventsel("Instructions Retired") | USR | OS | INT | EN;
        println!("ch2.2: sampling instructions retired in both rings: {sel:#x}");
        assert_eq!(sel, 0x53_00C0);
        let preload = PmuCaps::default().gp_mask() & 1000u64.wrapping_neg();
        println!("ch2.3: 48-bit preload for a period of 1000: {preload:#x}");
        assert_eq!(preload, 0xFFFF_FFFF_FC18);
        println!(
            "ch2.4: 0x188 is {}, 0x4C2 is {}, 0x38F is {}",
            msr::name(0x188),
            msr::name(0x4C2),
            msr::name(0x38F)
        );
        assert_eq!(msr::name(0x4C2), "IA32_A_PMC1");
    }

    #[test]
    fn exercise_ch3_handler_msr_writes() {
        // Two counters overflowed together; the handler disables all, acks both bits,
        // re-arms both counters and enables all: 1 + 1 + 2 + 1 writes.
        let writes = 1 + 1 + 2 + 1;
        println!("ch3.1: WRMSRs in one PMI with two overflowed counters: {writes}");
        assert_eq!(writes, 5);
    }

    #[test]
    fn exercise_ch4_sample_period() {
        // KVM's get_sample_period: (-counter) masked to the counter width, and a full
        // wrap-around when that is 0.
        let period = |counter: u64, mask: u64| match counter.wrapping_neg() & mask {
            0 => mask + 1,
            p => p,
        };
        let mask = PmuCaps::default().gp_mask();
        println!(
            "ch4.1: periods for 0xFFFFFFFFFFF0 and 0: {} and {:#x}",
            period(0xFFFF_FFFF_FFF0, mask),
            period(0, mask)
        );
        assert_eq!(period(0xFFFF_FFFF_FFF0, mask), 16);
        assert_eq!(period(0, mask), 1 << 48);
    }

    #[test]
    fn exercise_ch5_routed_msrs() {
        let routed: u32 = msr::PMU_MSR_BLOCKS.iter().map(|b| b.count).sum();
        println!("ch5.1: MSR indices routed to user space: {routed}");
        assert!(msr::is_pmu_msr(msr::IA32_PERF_GLOBAL_OVF_CTRL));
        assert!(!msr::is_pmu_msr(0x10));
        assert_eq!(routed, 8 + 8 + 4 + 1 + 4 + 8 + 8 + 12);
    }

    #[test]
    fn exercise_ch10_lazy_release() {
        // kvm_pmu_cleanup releases a counter's event when the counter is valid, was not marked
        // in use during the last slice, has an event, and is not enabled.
        struct Pmc {
            idx: u32,
            has_event: bool,
            enabled: bool,
        }
        let pmcs = [
            Pmc {
                idx: 0,
                has_event: true,
                enabled: false,
            },
            Pmc {
                idx: 1,
                has_event: true,
                enabled: false,
            },
            Pmc {
                idx: 32,
                has_event: true,
                enabled: true,
            },
        ];
        let in_use = [1u32];
        let released: Vec<u32> = pmcs
            .iter()
            .filter(|p| !in_use.contains(&p.idx) && p.has_event && !p.enabled)
            .map(|p| p.idx)
            .collect();
        println!("ch10.1: kvm_pmu_cleanup releases the events of counters {released:?}");
        assert_eq!(released, [0]);
    }
}
