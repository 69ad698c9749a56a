//! Every bad input gets one clear message naming the file (and line), and nothing is listed.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use swarmlabel_store::dataset::manifest::MediaType;
use swarmlabel_store::progress::NoProgress;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: Home,
    owner: Identity,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let (home, _) = Home::init(&root.join("home"), false).unwrap();
    Fixture {
        _dir: dir,
        root,
        home,
        owner: Identity::from_secret_bytes([3; 32]),
    }
}

impl Fixture {
    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn import(&self, path: &Path, labels: &str) -> Result<Report, ImportError> {
        self.import_with(path, labels, |_| {})
    }

    fn import_with(
        &self,
        path: &Path,
        labels: &str,
        tweak: impl FnOnce(&mut Options),
    ) -> Result<Report, ImportError> {
        let mut opts = Options::new("t", labels.split(',').map(str::to_owned).collect());
        opts.created_at_ms = Some(1);
        tweak(&mut opts);
        import(&self.home, &self.owner, path, &opts, &NoProgress)
    }

    /// Imports `path`, expects an error whose message contains every one of `needles`, and
    /// checks that nothing was listed.
    fn refuses(&self, path: &Path, labels: &str, needles: &[&str]) {
        self.refuses_with(path, labels, |_| {}, needles);
    }

    fn refuses_with(
        &self,
        path: &Path,
        labels: &str,
        tweak: impl FnOnce(&mut Options),
        needles: &[&str],
    ) {
        let err = self
            .import_with(path, labels, tweak)
            .expect_err("the import must fail")
            .to_string();
        for n in needles {
            assert!(err.contains(n), "message {err:?} lacks {n:?}");
        }
        assert!(!err.contains('\n'), "one sentence, one line: {err:?}");
        assert!(
            Catalog::of(&self.home).list().unwrap().is_empty(),
            "something was listed after: {err}"
        );
    }
}

fn png(seed: u64) -> Vec<u8> {
    crate::shapes::encode_png(&crate::shapes::draw(seed, 0, 0))
}

#[test]
fn missing_path() {
    let f = fixture();
    f.refuses(
        &f.root.join("nope.csv"),
        "a",
        &["nope.csv", "does not exist"],
    );
}

#[test]
fn unknown_format() {
    let f = fixture();
    let p = f.write("data.xlsx", "x");
    f.refuses(&p, "a", &["data.xlsx", "--format"]);
}

#[test]
fn empty_folder() {
    let f = fixture();
    fs::create_dir(f.root.join("empty")).unwrap();
    f.refuses(
        &f.root.join("empty"),
        "a",
        &["empty", "no PNG or JPEG images"],
    );
}

#[test]
fn folder_with_only_other_files_is_empty() {
    let f = fixture();
    f.write("docs/readme.txt", "hi");
    f.refuses(
        &f.root.join("docs"),
        "a",
        &["docs", "no PNG or JPEG images", "1 other files skipped"],
    );
}

#[test]
fn unreadable_image_file() {
    let f = fixture();
    f.write("imgs/a.png", png(1));
    std::os::unix::fs::symlink(f.root.join("gone.png"), f.root.join("imgs/b.png")).unwrap();
    f.refuses(&f.root.join("imgs"), "a", &["b.png", "cannot read"]);
}

#[test]
fn unreadable_csv() {
    let f = fixture();
    fs::create_dir(f.root.join("dir.csv")).unwrap();
    let csv = |o: &mut Options| o.format = Format::Csv;
    f.refuses_with(
        &f.root.join("dir.csv"),
        "a",
        csv,
        &["dir.csv", "cannot read"],
    );
}

#[test]
fn corrupt_image() {
    let f = fixture();
    f.write("imgs/a/1.png", png(1));
    let mut truncated = png(2);
    truncated.truncate(truncated.len() / 2);
    f.write("imgs/a/2.png", truncated);
    f.write("imgs/a/3.png", png(3));
    f.refuses(
        &f.root.join("imgs"),
        "a",
        &["2.png", "not a valid image", "remove or replace it"],
    );
    f.write("imgs/a/2.png", b"GIF89a not really");
    f.refuses(
        &f.root.join("imgs"),
        "a",
        &["2.png", "neither PNG nor JPEG"],
    );
}

#[test]
fn unsupported_file_is_skipped_with_a_warning_and_refused_under_strict() {
    let f = fixture();
    f.write("imgs/cat/1.png", png(1));
    f.write("imgs/cat/notes.txt", "hello");
    f.refuses_with(
        &f.root.join("imgs"),
        "cat",
        |o| o.strict = true,
        &["notes.txt", "--strict"],
    );
    let report = f.import(&f.root.join("imgs"), "cat").unwrap();
    assert_eq!(report.skipped, 1);
    assert!(
        report.warnings.iter().any(|w| w.contains("notes.txt")),
        "{:?}",
        report.warnings
    );
    assert_eq!(report.root.root().sample_count, 1);
}

#[test]
fn ragged_csv_row() {
    let f = fixture();
    let p = f.write("d.csv", "x,y,label\n1,2,a\n3,4\n");
    f.refuses(
        &p,
        "a",
        &["d.csv line 3", "2 fields", "header has 3", "fix the row"],
    );
}

#[test]
fn non_numeric_feature() {
    let f = fixture();
    let p = f.write("d.csv", "x,y,label\n1,2,a\n3,four,a\n");
    f.refuses(
        &p,
        "a",
        &["d.csv line 3", "column 'y'", "'four' is not a number"],
    );
    let p = f.write("e.csv", "x,y\n1,\n");
    f.refuses(&p, "a", &["e.csv line 2", "column 'y'", "is not a number"]);
    let p = f.write("n.csv", "x\nNaN\n");
    f.refuses(&p, "a", &["n.csv line 2", "'NaN' is not a number"]);
}

#[test]
fn label_not_in_the_label_set() {
    let f = fixture();
    let p = f.write("d.csv", "x,label\n1,a\n2,zebra\n");
    f.refuses(
        &p,
        "a,b",
        &[
            "d.csv line 3",
            "label 'zebra'",
            "(a,b)",
            "add it to --labels",
        ],
    );
    let p = f.write(
        "d.jsonl",
        "{\"text\":\"hi\",\"label\":\"a\"}\n{\"text\":\"yo\",\"label\":\"zebra\"}\n",
    );
    f.refuses(&p, "a,b", &["d.jsonl line 2", "label 'zebra'"]);
}

#[test]
fn missing_label_column() {
    let f = fixture();
    let p = f.write("d.csv", "x,y\n1,2\n");
    f.refuses_with(
        &p,
        "a",
        |o| o.label_column = Some("class".into()),
        &["no column 'class'", "x,y"],
    );
}

#[test]
fn empty_or_duplicated_label_names() {
    let f = fixture();
    let p = f.write("d.csv", "x\n1\n");
    f.refuses(&p, "a,,b", &["empty name", "--labels"]);
    f.refuses(&p, "", &["label set is empty"]);
    f.refuses(&p, "a,b,a", &["'a' appears twice"]);
}

#[test]
fn empty_csv_and_header_only_csv() {
    let f = fixture();
    let p = f.write("d.csv", "");
    f.refuses(&p, "a", &["d.csv", "empty"]);
    let p = f.write("h.csv", "x,y\n");
    f.refuses(&p, "a", &["h.csv", "no rows"]);
}

#[test]
fn malformed_jsonl() {
    let f = fixture();
    let p = f.write("d.jsonl", "{\"text\":\"hi\"}\n{\"text\": oops}\n");
    f.refuses(&p, "a", &["d.jsonl line 2", "not valid JSON"]);
    let p = f.write("e.jsonl", "{\"body\":\"hi\"}\n");
    f.refuses(
        &p,
        "a",
        &["e.jsonl line 1", "no string field 'text'", "--text-field"],
    );
}

#[test]
fn duplicate_samples_are_stored_once_and_reported() {
    let f = fixture();
    let p = f.write("d.csv", "x,y,label\n1,2,a\n1.0,2.0,a\n3,4,b\n1,2,b\n");
    let report = f.import(&p, "a,b").unwrap();
    let root = report.root.root();
    assert_eq!(root.sample_count, 2);
    assert_eq!(report.duplicates, 2);
    assert!(
        report.duplicate_examples[0].contains("d.csv line 3"),
        "{:?}",
        report.duplicate_examples
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("line 5") && w.contains("different gold label"))
    );
    let page = Catalog::of(&f.home)
        .page(&Catalog::of(&f.home).get(&report.id).unwrap(), 0)
        .unwrap();
    assert_eq!(
        page.samples.iter().map(|s| s.gold).collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
}

#[test]
fn images_get_gold_labels_from_label_named_folders() {
    let f = fixture();
    f.write("imgs/cat/1.png", png(1));
    f.write("imgs/dog/deep/2.png", png(2));
    f.write("imgs/misc/3.png", png(3));
    f.write("imgs/4.png", png(4));
    let report = f.import(&f.root.join("imgs"), "cat,dog").unwrap();
    let catalog = Catalog::of(&f.home);
    let page = catalog.page(&catalog.get(&report.id).unwrap(), 0).unwrap();
    // Sorted path order: 4.png, cat/1.png, dog/deep/2.png, misc/3.png.
    let golds: Vec<_> = page.samples.iter().map(|s| s.gold).collect();
    assert_eq!(golds, [None, Some(0), Some(1), None]);
    assert!(page.samples.iter().all(|s| s.media_type == MediaType::Png));
    assert!(
        report.warnings.iter().any(|w| w.contains("'misc'")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_second_import_finds_its_blobs_already_stored() {
    let f = fixture();
    let p = f.write("d.csv", "x\n1\n2\n");
    let first = f.import(&p, "a").unwrap();
    assert_eq!(first.existing_blobs, 0);
    let second = f.import_with(&p, "a", |o| o.name = "again".into()).unwrap();
    assert_eq!(second.existing_blobs, 2);
    assert_eq!(Catalog::of(&f.home).list().unwrap().len(), 2);
}

/// Pins the byte encoding of samples, pages and roots: if this test fails, the format changed,
/// and every dataset id with it. Change `docs/formats.md` and bump the magic instead.
#[test]
fn encoding_is_pinned_and_the_same_in_two_homes() {
    let csv = "a,b,label\n1,2,x\n-0,0.5,y\n3,4,\n";
    let mut pages = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let f = fixture();
        let p = f.write("d.csv", csv);
        let report = f
            .import_with(&p, "x,y", |o| o.name = "pinned".into())
            .unwrap();
        let root = report.root.root();
        pages.push(f.home.blobs().get(&root.pages[0].id).unwrap());
        ids.push(report.id);
    }
    assert_eq!(
        pages[0], pages[1],
        "the same data gives byte-identical pages"
    );
    assert_eq!(
        ids[0], ids[1],
        "the same data, key and time give the same dataset id"
    );
    assert_eq!(
        BlobId::of(&encode_row_for_test(&[1.0, 2.0])).to_hex(),
        "890319912f63b95c4b5f1e2ca8e0a8e9307f4e2b7a3d22783e1d0a6b7aaf3e4f",
        "sample encoding changed"
    );
    assert_eq!(
        BlobId::of(&pages[0]).to_hex(),
        "88c4667ddd0705a72d7390b5bf0655e30a334067ccda873d487f3ae436a0235e",
        "page encoding changed"
    );
    assert_eq!(
        ids[0].to_string(),
        "7d96843fe87a25c1cb8d827bde2c40f1db804ba87edfb9f4ba2765c35c137da6",
        "root encoding changed"
    );
}

fn encode_row_for_test(values: &[f64]) -> Vec<u8> {
    swarmlabel_store::dataset::manifest::encode_row(values)
}

#[test]
fn the_redundancy_target_is_signed_into_the_root_and_bounded() {
    let f = fixture();
    let p = f.write("d.csv", "a,b\n1,2\n3,4\n");
    for bad in [0, 17] {
        f.refuses_with(
            &p,
            "x,y",
            |o| o.redundancy = bad,
            &[&format!("--redundancy {bad}"), "1 to 16"],
        );
    }
    let report = f.import_with(&p, "x,y", |o| o.redundancy = 3).unwrap();
    assert_eq!(report.root.root().redundancy, 3);
    let listed = Catalog::of(&f.home).get(&report.id).unwrap();
    assert_eq!(
        listed.root.root().redundancy,
        3,
        "read back from the catalog"
    );
}
