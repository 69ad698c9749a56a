//! Every decoder that reads bytes from a peer, fed arbitrary and mutated bytes: it returns a value
//! or an error, never panics, and never accepts a mutated signed root.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use proptest::prelude::*;
use swarmlabel_net::swarm::announce::Announcement;
use swarmlabel_net::swarm::blob;
use swarmlabel_store::Identity;
use swarmlabel_store::dataset::manifest::{
    MediaType, Page, PageRef, Root, SampleEntry, SignedRoot, Task,
};
use swarmlabel_store::store::BlobId;

fn root(pages: Vec<PageRef>) -> Root {
    Root {
        name: "n".into(),
        description: "d".into(),
        instructions: String::new(),
        task: Task::TabularClassification {
            features: vec!["a".into(), "b".into()],
        },
        labels: vec!["x".into(), "y".into()],
        owner: Identity::from_secret_bytes([4; 32]).public_key(),
        created_at_ms: 5,
        sample_count: pages.iter().map(|p| u64::from(p.samples)).sum(),
        gold_count: 0,
        redundancy: 1,
        total_bytes: 0,
        pages,
    }
}

fn signed() -> SignedRoot {
    SignedRoot::sign(
        root(vec![PageRef {
            id: BlobId([1; 32]),
            samples: 2,
        }]),
        &Identity::from_secret_bytes([4; 32]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedRoot::decode(&bytes);
        let _ = Root::decode(&bytes);
        let _ = Page::decode(&bytes, &root(vec![PageRef { id: BlobId([1; 32]), samples: 2 }]), 0);
        let _ = Announcement::decode(&bytes);
        let _ = blob::decode_request(&bytes);
    }

    #[test]
    fn a_mutated_signed_root_is_never_accepted(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = signed().bytes().to_vec();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(SignedRoot::decode(&bytes).is_err());
        let mut announcement = Announcement { sequence: 1, root: signed() }.encode();
        let j = 16 + index.index(announcement.len() - 16);
        announcement[j] ^= 1 << bit;
        prop_assert!(Announcement::decode(&announcement).is_err());
    }

    #[test]
    fn mutated_pages_decode_or_fail_cleanly(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let page = Page {
            index: 0,
            samples: vec![
                SampleEntry { id: BlobId([2; 32]), size: 16, media_type: MediaType::Row, gold: Some(1) },
                SampleEntry { id: BlobId([3; 32]), size: 16, media_type: MediaType::Row, gold: None },
            ],
        };
        let mut bytes = page.encode();
        let i = index.index(bytes.len());
        bytes[i] = byte;
        let the_root = root(vec![PageRef { id: BlobId::of(&bytes), samples: 2 }]);
        if let Ok(decoded) = Page::decode(&bytes, &the_root, 0) {
            // Whatever decodes respects the root: two entries, gold labels in the label set.
            prop_assert_eq!(decoded.samples.len(), 2);
            prop_assert!(decoded.samples.iter().all(|s| s.gold.is_none_or(|g| g < 2)));
        }
    }
}
