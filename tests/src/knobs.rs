//! The knob reference of `docs/knobs.md`, written from the core's tables:
//! a test holds the page to it, so that the docs cannot list a knob the
//! core lacks, or miss one it has.

use conr_core::density::DensityConfig;
use conr_core::dir::ranksim::RankSim;
use conr_core::dir::rnc::RankNContrast;
use conr_core::fds::Fds;
use conr_core::knob::{Kind, Knobs, Value};
use conr_core::{Config, Named, Preset};

/// What a knob of `kind` takes, in the docs' words.
fn takes(kind: Kind) -> String {
    let names = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kind {
        Kind::Number => "a number".into(),
        Kind::OptionalNumber => "a number, or none".into(),
        Kind::Count => "a whole number".into(),
        Kind::Flag => "true or false".into(),
        Kind::Name(n) => format!("one of {}", names(n)),
        Kind::OptionalName(n) => format!("one of {}, or none", names(n)),
        Kind::Pushing(n) => format!("a kind ({}) and a scale", names(n)),
    }
}

/// A value as the docs write it.
fn shown(value: Option<Value<'_>>) -> String {
    match value {
        Some(Value::Number(x)) => format!("{x}"),
        Some(Value::Count(n)) => n.to_string(),
        Some(Value::Flag(b)) => b.to_string(),
        Some(Value::Name(name)) => format!("`{name}`"),
        Some(Value::Unset) => "none".into(),
        Some(Value::Pushing { kind, scale }) => format!("`{kind}`, {scale}"),
        None => String::new(),
    }
}

/// The rows of `K`'s table, one column of values per config in `columns`.
fn rows<K: Knobs>(columns: &[K]) -> String {
    let mut out = String::new();
    for knob in K::KNOBS {
        let values: Vec<String> = columns.iter().map(|c| shown(c.get(knob.name))).collect();
        let domain = if knob.domain.is_empty() {
            "any"
        } else {
            knob.domain
        };
        // A `|` in a cell would end it.
        let cell = |text: &str| text.replace('|', "\\|");
        out += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            knob.name,
            takes(knob.kind),
            cell(domain),
            values.join(" | "),
            cell(knob.doc)
        );
    }
    out
}

/// The generated part of `docs/knobs.md`.
pub fn markdown() -> String {
    let presets: Vec<&str> = Preset::NAMES.to_vec();
    let configs: Vec<Config> = Preset::TABLE.iter().map(|(_, p)| p.config()).collect();
    let mut out = String::new();
    out += "## ConR: `Config`\n\n";
    out += &format!(
        "| knob | takes | domain | {} | what it does |\n",
        presets
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out += &format!("|{}\n", " --- |".repeat(4 + presets.len()));
    out += &rows(&configs);
    out += &defaults::<DensityConfig>("Label-density weights: `DensityConfig`");
    out += &defaults::<RankSim>("RankSim: `RankSim`");
    out += &defaults::<RankNContrast>("Rank-N-Contrast: `RankNContrast`");
    out += &defaults::<Fds>("Feature distribution smoothing: `Fds`");
    out
}

/// The section of a config whose one column of values is its default.
fn defaults<K: Knobs + Default>(title: &str) -> String {
    let mut out = format!("\n## {title}\n\n");
    out += "| knob | takes | domain | default | what it does |\n";
    out += "| --- | --- | --- | --- | --- |\n";
    out += &rows(&[K::default()]);
    out
}

#[cfg(test)]
mod tests {
    /// `docs/knobs.md` between its markers is [`super::markdown`].
    #[test]
    fn the_knob_reference_is_the_cores_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/knobs.md");
        let page = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- knob tables: begin -->\n", "<!-- knob tables: end -->");
        let start = page.find(begin).expect("the page marks its tables") + begin.len();
        let stop = page.find(end).expect("the page marks their end");
        let want = super::markdown();
        assert!(
            page[start..stop] == want,
            "docs/knobs.md is not the core's table; between its markers it should read:\n{want}"
        );
    }
}
