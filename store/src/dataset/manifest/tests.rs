use super::*;

fn sample_root(owner: &Identity, pages: Vec<PageRef>) -> Root {
    Root {
        name: "n".into(),
        description: "d".into(),
        instructions: String::new(),
        task: Task::TabularClassification {
            features: vec!["x".into(), "y".into()],
        },
        labels: vec!["a".into(), "b".into()],
        redundancy: 3,
        owner: owner.public_key(),
        created_at_ms: 1_700_000_000_000,
        sample_count: pages.iter().map(|p| u64::from(p.samples)).sum(),
        gold_count: 1,
        total_bytes: 32,
        pages,
    }
}

#[test]
fn root_round_trips_and_signature_binds_every_byte() {
    let owner = Identity::from_secret_bytes([1; 32]);
    let root = sample_root(
        &owner,
        vec![PageRef {
            id: BlobId([5; 32]),
            samples: 2,
        }],
    );
    let signed = SignedRoot::sign(root.clone(), &owner);
    let decoded = SignedRoot::decode(signed.bytes()).unwrap();
    assert_eq!(decoded.root(), &root);
    assert_eq!(decoded.id(), signed.id());
    for i in 0..signed.bytes().len() {
        let mut bad = signed.bytes().to_vec();
        bad[i] ^= 1;
        assert!(
            SignedRoot::decode(&bad).is_err(),
            "flipping byte {i} was accepted"
        );
    }
    for n in 0..signed.bytes().len() {
        assert!(SignedRoot::decode(&signed.bytes()[..n]).is_err());
    }
}

#[test]
fn a_redundancy_of_0_or_above_the_bound_is_refused() {
    let owner = Identity::from_secret_bytes([1; 32]);
    for redundancy in [0, MAX_REDUNDANCY + 1] {
        let mut root = sample_root(
            &owner,
            vec![PageRef {
                id: BlobId([5; 32]),
                samples: 2,
            }],
        );
        root.redundancy = redundancy;
        assert_eq!(
            Root::decode(&root.encode()),
            Err(DecodeError::Bounds("redundancy"))
        );
    }
}

#[test]
fn page_round_trips_and_is_checked_against_its_root() {
    let owner = Identity::from_secret_bytes([1; 32]);
    let page = Page {
        index: 0,
        samples: vec![
            SampleEntry {
                id: BlobId([1; 32]),
                size: 16,
                media_type: MediaType::Row,
                gold: Some(1),
            },
            SampleEntry {
                id: BlobId([2; 32]),
                size: 16,
                media_type: MediaType::Row,
                gold: None,
            },
        ],
    };
    let bytes = page.encode();
    let root = sample_root(
        &owner,
        vec![PageRef {
            id: BlobId::of(&bytes),
            samples: 2,
        }],
    );
    assert_eq!(Page::decode(&bytes, &root, 0).unwrap(), page);
    assert!(Page::decode(&bytes, &root, 1).is_err());
    let mut one_label = root.clone();
    one_label.labels.truncate(1);
    assert_eq!(
        Page::decode(&bytes, &one_label, 0),
        Err(DecodeError::Mismatch("gold label outside the label set"))
    );
    for n in 0..bytes.len() {
        assert!(Page::decode(&bytes[..n], &root, 0).is_err());
    }
}

#[test]
fn row_encoding_is_canonical_and_round_trips() {
    assert_eq!(encode_row(&[-0.0]), encode_row(&[0.0]));
    assert_eq!(
        encode_row(&[1.0, 2.5]),
        [1.0f64.to_le_bytes(), 2.5f64.to_le_bytes()].concat()
    );
    assert_eq!(
        decode_row(&encode_row(&[1.0, -3.25])),
        Some(vec![1.0, -3.25])
    );
    assert_eq!(decode_row(&[0; 7]), None);
    assert_eq!(decode_row(&f64::NAN.to_le_bytes()), None);
}

#[test]
fn huge_declared_lengths_are_refused_before_allocating() {
    let mut bytes = ROOT_MAGIC.to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Root::decode(&bytes), Err(DecodeError::Bounds("name")));
}

/// Instructions (issue 16) travel in the signed root as version 3; a root without them keeps the
/// version 2 bytes, so existing dataset ids do not change and older nodes still read new roots
/// that have none.
#[test]
fn instructions_round_trip_as_version_3_and_roots_without_keep_version_2() {
    let owner = Identity::from_secret_bytes([1; 32]);
    let pages = vec![PageRef {
        id: BlobId([5; 32]),
        samples: 2,
    }];
    let plain = sample_root(&owner, pages.clone());
    assert_eq!(&plain.encode()[..8], b"SWLROOT2");
    let mut briefed = sample_root(&owner, pages);
    briefed.instructions = "# Label\n**Only** the foreground.".into();
    let bytes = briefed.encode();
    assert_eq!(&bytes[..8], b"SWLROOT3");
    assert_eq!(Root::decode(&bytes).unwrap(), briefed);
    let signed = SignedRoot::sign(briefed.clone(), &owner);
    assert_eq!(SignedRoot::decode(signed.bytes()).unwrap().root(), &briefed);

    // Version 3 with empty instructions would be a second encoding of a version 2 root.
    // (name "n" and description "d" take 5 bytes each after the magic).
    let v2 = plain.encode();
    let mut empty = b"SWLROOT3".to_vec();
    empty.extend_from_slice(&v2[8..18]);
    empty.extend_from_slice(&0u32.to_le_bytes());
    empty.extend_from_slice(&v2[18..]);
    assert_eq!(
        Root::decode(&empty),
        Err(DecodeError::Bounds("instructions"))
    );
    // Declared longer than the bound: refused before allocating.
    let mut long = b"SWLROOT3".to_vec();
    long.extend_from_slice(&1u32.to_le_bytes());
    long.push(b'n');
    long.extend_from_slice(&0u32.to_le_bytes());
    long.extend_from_slice(&(MAX_INSTRUCTIONS_BYTES as u32 + 1).to_le_bytes());
    assert_eq!(
        Root::decode(&long),
        Err(DecodeError::Bounds("instructions"))
    );
}
