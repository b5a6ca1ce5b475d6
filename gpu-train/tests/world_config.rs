//! World files: the shipped ones load, other valid files work without code
//! changes, and bad files fail with errors naming the file and the field.

use gpu_train::world::{Shape, Split, World, WorldConfig};
use reward_core::vocab::{Expansion, Vocabulary};

fn load(text: &str) -> Result<World, String> {
    let cfg = WorldConfig::from_toml_str(text, "worlds/bad.toml").map_err(|e| e.to_string())?;
    World::new(
        cfg,
        &Vocabulary::builtin(Expansion::Fisao),
        "worlds/bad.toml",
    )
    .map_err(|e| e.to_string())
}

const MINIMAL: &str = r#"
name = "minimal"
[counts]
train = 10
validation = 5
test = 5
[captions]
bias_rate = 0.2
[[classes]]
name = "cat"
[[classes]]
name = "dog"
[[classes]]
name = "teddy bear"
[[pairs]]
objects = ["cat", "dog"]
cooccurrence = 0.5
"#;

#[test]
fn shipped_worlds_load() {
    let world = World::default_world().unwrap();
    let cfg = world.config();
    assert_eq!(world.classes().len(), 12);
    assert_eq!(cfg.pairs.len(), 4);
    assert_eq!(cfg.captions.bias_rate, 0.3);
    assert_eq!(cfg.image_size, 64);
    assert!(cfg.counts.test >= 1000);
    assert_eq!(
        world.partner(world.class_id("fork").unwrap()).map(|p| p.0),
        world.class_id("knife")
    );
    // Every class in the default world has its own look.
    let mut looks: Vec<_> = world
        .classes()
        .iter()
        .map(|c| format!("{:?}", c.appearance.shape))
        .collect();
    looks.sort();
    looks.dedup();
    assert_eq!(looks.len(), 12);
    let tiny = World::tiny_world().unwrap();
    assert!(tiny.len(Split::Train) <= 100);
    // The file on disk is the one compiled in.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../worlds/default.toml");
    assert_eq!(
        World::from_file(&path).unwrap().summary_json(),
        world.summary_json()
    );
    // The second full-size world (other classes, two-word names, 5 pairs).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../worlds/street.toml");
    let street = World::from_file(&path).unwrap();
    assert_eq!(street.classes().len(), 12);
    assert_eq!(street.config().pairs.len(), 5);
    assert_eq!(
        street
            .partner(street.class_id("dining table").unwrap())
            .map(|p| p.0),
        street.class_id("chair")
    );
    let stats = street.stats(Split::Train, 2000);
    assert!(stats.bias_rate() > 0.3, "{}", stats.bias_rate());
}

#[test]
fn other_world_files_work_without_code_changes() {
    let world = load(MINIMAL).unwrap();
    assert_eq!(world.config().image_size, 64, "default image size");
    assert_eq!(world.classes()[2].plural, "teddy bears");
    assert_eq!(world.classes()[0].appearance.shape, Shape::Disc);
    let s = world.sample(Split::Test, 0);
    assert_eq!(s.image.rgb.len(), 64 * 64 * 3);
    assert!(!s.caption().is_empty());
    let json = world.summary_json();
    assert!(
        json.contains("\"teddy bear\"") && json.contains("\"partner\": \"dog\""),
        "{json}"
    );
}

fn expect_error(edit: (&str, &str), needles: &[&str]) {
    assert!(
        MINIMAL.contains(edit.0),
        "bad test: {:?} not in the minimal world",
        edit.0
    );
    let text = MINIMAL.replacen(edit.0, edit.1, 1);
    let err = load(&text)
        .err()
        .unwrap_or_else(|| panic!("{edit:?} should be rejected"));
    assert!(err.starts_with("worlds/bad.toml: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{edit:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn bad_world_files_give_clear_errors() {
    expect_error(
        ("name = \"cat\"", "name = \"unicorn\""),
        &["classes[0].name", "\"unicorn\"", "vocabulary"],
    );
    expect_error(("name = \"cat\"", "name = \"kitty\""), &["classes[0].name"]);
    expect_error(
        ("name = \"teddy bear\"", "name = \"dog\""),
        &["classes[2].name", "twice"],
    );
    expect_error(
        ("[\"cat\", \"dog\"]", "[\"cat\", \"bus\"]"),
        &["pairs[0].objects", "\"bus\""],
    );
    expect_error(
        ("[\"cat\", \"dog\"]", "[\"cat\", \"cat\"]"),
        &["pairs[0].objects"],
    );
    expect_error(
        ("cooccurrence = 0.5", "cooccurrence = 1.5"),
        &["pairs[0].cooccurrence", "1.5"],
    );
    expect_error(
        ("bias_rate = 0.2", "bias_rate = -0.1"),
        &["captions.bias_rate"],
    );
    expect_error(("test = 5", "test = 0"), &["counts.test"]);
    expect_error(
        ("name = \"minimal\"", "name = \"m\"\nimage_size = 8"),
        &["image_size", "8"],
    );
    expect_error(
        ("[captions]", "[objects]\nmin = 3\nmax = 2\n[captions]"),
        &["objects.min", "max = 2"],
    );
    expect_error(
        ("[captions]", "[objects]\nscale = [0.3, 0.1]\n[captions]"),
        &["objects.scale"],
    );
    expect_error(
        ("name = \"dog\"", "name = \"dog\"\ncolour = \"red\""),
        &["classes[1].colour", "#rrggbb"],
    );
    expect_error(
        ("name = \"dog\"", "name = \"dog\"\nplural = \" dogs\""),
        &["classes[1].plural"],
    );
    // Schema errors come from the TOML parser with line and key.
    expect_error(
        ("bias_rate = 0.2", "bias_rate = 0.2\nbias = 0.3"),
        &["unknown field", "bias", "line"],
    );
    expect_error(
        ("name = \"cat\"", "name = \"cat\"\nshape = \"blob\""),
        &["blob", "disc"],
    );
    expect_error(("train = 10", "train = \"ten\""), &["train", "line"]);
    expect_error(("[captions]\nbias_rate = 0.2", ""), &["captions"]);
}

#[test]
fn a_missing_file_names_the_path() {
    let err = World::from_file(std::path::Path::new("/no/such/world.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/world.toml"), "{err}");
}
