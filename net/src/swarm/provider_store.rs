//! Kademlia's record store, bounded for a network of strangers (audit 2026-12-04, N9): libp2p's
//! `MemoryStore` keeps each provider record with every address its sender gave (up to a whole
//! 16 KiB packet), and the first providers of a key keep their places for good. Here a provider
//! record keeps at most [`MAX_ADDRESSES`] addresses of at most [`MAX_ADDRESS_BYTES`] bytes, one
//! peer may be the provider of at most [`MAX_PER_PROVIDER`] keys on this node, and a key that has
//! all its providers gives the place of the one whose record expires first to a new one (a
//! provider that republishes keeps its place; one that stopped does not). So the store holds at
//! most `MAX_KEYS × MAX_PROVIDERS_PER_KEY` records of bounded size, and no peer more than its
//! share.

use std::borrow::Cow;
use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::kad::store::{self, MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};

/// Keys (datasets) with providers held at most.
pub const MAX_KEYS: usize = 10_000;
/// Providers held per key at most (libp2p's replication factor).
pub const MAX_PROVIDERS_PER_KEY: usize = 20;
/// Addresses kept per provider record.
pub const MAX_ADDRESSES: usize = 4;
/// Bytes of one address kept at most.
pub const MAX_ADDRESS_BYTES: usize = 128;
/// Keys one peer may be the provider of on this node.
pub const MAX_PER_PROVIDER: usize = 256;

/// The bounded store.
pub struct ProviderStore {
    inner: MemoryStore,
    local: PeerId,
    per_provider: HashMap<PeerId, usize>,
}

impl std::fmt::Debug for ProviderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderStore")
            .field("providers", &self.per_provider.len())
            .finish_non_exhaustive()
    }
}

impl ProviderStore {
    /// An empty store of the node `local`.
    pub fn new(local: PeerId) -> Self {
        let config = MemoryStoreConfig {
            max_records: 1_024,
            max_value_bytes: 65 * 1024,
            max_providers_per_key: MAX_PROVIDERS_PER_KEY,
            max_provided_keys: MAX_KEYS,
        };
        Self {
            inner: MemoryStore::with_config(local, config),
            local,
            per_provider: HashMap::new(),
        }
    }

    fn count(&mut self, provider: PeerId, delta: isize) {
        let n = self.per_provider.entry(provider).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.per_provider.remove(&provider);
        }
    }
}

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        self.inner.put(r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> store::Result<()> {
        record
            .addresses
            .retain(|a| a.as_ref().len() <= MAX_ADDRESS_BYTES);
        record.addresses.truncate(MAX_ADDRESSES);
        let held = self.inner.providers(&record.key);
        let known = held.iter().any(|p| p.provider == record.provider);
        if !known {
            if record.provider != self.local
                && self
                    .per_provider
                    .get(&record.provider)
                    .copied()
                    .unwrap_or(0)
                    >= MAX_PER_PROVIDER
            {
                return Err(store::Error::MaxProvidedKeys);
            }
            if held.len() >= MAX_PROVIDERS_PER_KEY
                && let Some(stalest) = held
                    .iter()
                    .filter(|p| p.provider != self.local)
                    .min_by_key(|p| p.expires)
            {
                let stalest = stalest.provider;
                self.inner.remove_provider(&record.key, &stalest);
                self.count(stalest, -1);
            }
        }
        let provider = record.provider;
        self.inner.add_provider(record)?;
        if !known {
            self.count(provider, 1);
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        if self.inner.providers(k).iter().any(|r| r.provider == *p) {
            self.count(*p, -1);
        }
        self.inner.remove_provider(k, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::Multiaddr;

    fn record(key: u32, provider: PeerId, addresses: usize) -> ProviderRecord {
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let mut r = ProviderRecord::new(RecordKey::new(&key.to_le_bytes()), provider, vec![]);
        r.addresses = vec![addr; addresses];
        r
    }

    #[test]
    fn records_are_bounded_in_addresses_per_provider_and_per_key() {
        let mut store = ProviderStore::new(PeerId::random());
        let flooder = PeerId::random();
        // A record with 1,000 addresses keeps 4.
        store.add_provider(record(1, flooder, 1_000)).unwrap();
        assert_eq!(
            store.providers(&RecordKey::new(&1u32.to_le_bytes()))[0]
                .addresses
                .len(),
            4
        );
        // One peer may provide 256 keys here, no more.
        for key in 2..=MAX_PER_PROVIDER as u32 {
            store.add_provider(record(key, flooder, 1)).unwrap();
        }
        assert!(store.add_provider(record(100_000, flooder, 1)).is_err());
        // A key full of providers makes room for a new one in place of the stalest.
        let key = RecordKey::new(&7u32.to_le_bytes());
        let sybils: Vec<PeerId> = (0..MAX_PROVIDERS_PER_KEY)
            .map(|_| PeerId::random())
            .collect();
        for s in &sybils {
            let _ = store.add_provider(record(7, *s, 1));
        }
        let honest = PeerId::random();
        store.add_provider(record(7, honest, 1)).unwrap();
        let held = store.providers(&key);
        assert_eq!(held.len(), MAX_PROVIDERS_PER_KEY);
        assert!(held.iter().any(|r| r.provider == honest));
    }
}
