//! The WGSL sources (`shaders/`) and the modules the kernels compile.
//!
//! WGSL has no imports. Each file names on its first line the files it
//! requires (`// requires: layout.wgsl rules.wgsl`, or `nothing`), and
//! [`module`] puts them before it, each once, with every `enable` directive
//! at the top. A file so composed is a whole module: naga validates each
//! file of the folder that way (see the tests), and the kernels compile the
//! three files that hold entry points.

/// Every WGSL file of `shaders/`, by name.
pub const FILES: [(&str, &str); 8] = [
    ("layout.wgsl", include_str!("../shaders/layout.wgsl")),
    ("pairs.wgsl", include_str!("../shaders/pairs.wgsl")),
    ("stats.wgsl", include_str!("../shaders/stats.wgsl")),
    ("rules.wgsl", include_str!("../shaders/rules.wgsl")),
    ("normalize.wgsl", include_str!("../shaders/normalize.wgsl")),
    ("conr.wgsl", include_str!("../shaders/conr.wgsl")),
    ("band_plan.wgsl", include_str!("../shaders/band_plan.wgsl")),
    (
        "conr_mixed.wgsl",
        include_str!("../shaders/conr_mixed.wgsl"),
    ),
];

/// The f32 loss kernels.
pub const F32: &str = "conr.wgsl";
/// The kernels that build the band plan on the device.
pub const BAND_PLAN: &str = "band_plan.wgsl";
/// The mixed-precision tile kernels (f16 and cooperative matrices).
pub const MIXED: &str = "conr_mixed.wgsl";

/// The text of the file `name`, if `shaders/` has it.
pub fn source(name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, text)| text)
}

/// The files `source` names on its first line as the ones it requires.
pub fn requires(source: &str) -> Vec<&str> {
    let first = source.lines().next().unwrap_or_default();
    match first.strip_prefix("// requires:").map(str::trim) {
        Some("nothing") | None => Vec::new(),
        Some(list) => list.split_whitespace().collect(),
    }
}

/// The file `name` as a whole module: every file it requires, directly or
/// through another, once and before the files that require it, then the
/// file itself; the `enable` directives of them all first.
///
/// # Panics
/// If `name`, or a file it requires, is not in [`FILES`], or the
/// requirements form a cycle: both are mistakes in `shaders/` that the tests
/// catch.
pub fn module(name: &str) -> String {
    let mut order = Vec::new();
    visit(name, &mut Vec::new(), &mut order);
    let mut enables = String::new();
    let mut body = String::new();
    for file in order {
        for line in source(file).unwrap_or_default().lines() {
            if line.starts_with("enable ") {
                if !enables.contains(line) {
                    enables.push_str(line);
                    enables.push('\n');
                }
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    enables + &body
}

/// Depth first: `name`'s requirements into `order`, then `name`.
fn visit<'a>(name: &'a str, path: &mut Vec<&'a str>, order: &mut Vec<&'a str>) {
    if order.contains(&name) {
        return;
    }
    assert!(!path.contains(&name), "shaders/{name} requires itself");
    let text = source(name).unwrap_or_else(|| panic!("no shaders/{name}"));
    path.push(name);
    for required in requires(text) {
        visit(required, path, order);
    }
    path.pop();
    order.push(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shaders/` holds exactly the files of [`FILES`], each the text
    /// compiled in, and each names its requirements on its first line.
    #[test]
    fn the_table_is_the_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".wgsl"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        for (name, text) in FILES {
            assert_eq!(text, std::fs::read_to_string(dir.join(name)).unwrap());
            assert!(text.starts_with("// requires: "), "{name}'s first line");
        }
    }

    /// Requirements come first, each once, with the directives at the top.
    #[test]
    fn a_module_is_its_requirements_then_itself() {
        let mixed = module(MIXED);
        assert!(mixed.starts_with("enable f16;\nenable wgpu_cooperative_matrix;\n"));
        // A declaration of each: layout.wgsl, pairs.wgsl, stats.wgsl, the file.
        let positions: Vec<_> = [
            "struct Uniforms {",
            "fn banded()",
            "fn lse_push(",
            "fn to_half(",
        ]
        .map(|declaration| mixed.find(declaration).expect(declaration))
        .into();
        assert!(positions.is_sorted(), "{positions:?}");
        assert_eq!(mixed.matches("struct Uniforms {").count(), 1);
        assert_eq!(module("layout.wgsl"), source("layout.wgsl").unwrap());
    }
}
