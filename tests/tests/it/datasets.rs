//! Datasets across crates: what goes in comes out, value for value.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use swarmlabel_formats::export::{ExportFormat, export};
use swarmlabel_formats::import::{Options, import};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_tests::{TempHome, test_data};

/// Importing digits and exporting it as CSV gives back every row of the file (features and
/// label), in order, read independently with the csv crate.
#[test]
fn digits_export_gives_back_the_csv_value_for_value() {
    let t = TempHome::new();
    let path = test_data("digits.csv");
    let labels = (0..10).map(|d| d.to_string()).collect();
    let report = import(
        &t.home,
        &t.identity,
        &path,
        &Options::new("digits", labels),
        &NoProgress,
    )
    .expect("digits imports");
    let mut out = Vec::new();
    let n = export(
        &swarmlabel_store::Catalog::of(&t.home),
        &report.id,
        ExportFormat::Csv,
        &mut out,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(n, 1797);

    let mut original = csv::Reader::from_path(&path).unwrap();
    let mut exported = csv::Reader::from_reader(out.as_slice());
    let original_header: Vec<String> = original
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let exported_header: Vec<String> = exported
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(exported_header[0], "sample_id");
    assert_eq!(exported_header[1..], original_header[..]);
    let mut rows = 0;
    for (a, b) in original.records().zip(exported.records()) {
        let (a, b) = (a.unwrap(), b.unwrap());
        let a: Vec<f64> = a.iter().map(|v| v.parse().unwrap()).collect();
        let b: Vec<f64> = b.iter().skip(1).map(|v| v.parse().unwrap()).collect();
        assert_eq!(a, b);
        rows += 1;
    }
    assert_eq!(rows, 1797);
}
