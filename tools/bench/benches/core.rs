//! criterion benchmarks of Candor's hot paths (issue 7; figures in BENCHMARKS.md):
//! tree append (hash only; hash and build tiles; hash, tiles and a durable redb
//! commit), inclusion and consistency proofs at 10^6 and 10^7 leaves (from stored
//! hashes in RAM and through tiles, the server's path), receipt verification,
//! checkpoint signing, Ed25519 verification (single, strict, batch), entry
//! canonicalisation, and rs_merkle / ct-merkle doing the
//! same job (root, inclusion proof) in the same run.
//!
//! Under `cargo test` (no `--bench` argument) every size shrinks so CI stays fast.

use std::collections::HashMap;
use std::hint::black_box;

use base64::Engine as _;
use candor_bench::{full_run, leaf_hashes};
use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
use candor_core::entry::{KeyAction, Leaf, SignedEntry, samples};
use candor_core::hash::{Hash, leaf_hash, node_hash, sha256};
use candor_core::merkle::{self, MemoryTree, TreeError};
use candor_core::note::SignerKey;
use candor_core::receipt::{CompanyKeyProof, Receipt, verify_receipt};
use candor_core::tiles::{Tile, TileHashReader, TileReader};
use candor_core::tlog_proof::TlogProof;
use candor_server::edge::Edge;
use candor_store::{Batch, StoreKind, TreeState, open_store};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Tiles in RAM, keyed by (level, index): the tile layout the server stores.
struct MemTiles(HashMap<(u8, u64), Vec<u8>>);

impl TileReader for MemTiles {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError> {
        tiles
            .iter()
            .map(|t| {
                let need = t.width as usize * 32;
                self.0
                    .get(&(t.level, t.index))
                    .filter(|b| b.len() >= need)
                    .map(|b| b[..need].to_vec())
                    .ok_or_else(|| TreeError::Reader(format!("no tile {}", t.path())))
            })
            .collect()
    }
}

fn sizes() -> Vec<u64> {
    if full_run() {
        vec![1_000_000, 10_000_000]
    } else {
        vec![10_000]
    }
}

/// Tree append: the leaf hash and the interior hashes, per leaf.
fn append(c: &mut Criterion) {
    let n: u64 = if full_run() { 1 << 20 } else { 4096 };
    let hashes = leaf_hashes(n);
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    // Stored hashes in a Vec (Go tlog's scheme, ~2 hashes per leaf).
    g.bench_function(format!("memory_tree/{n}"), |b| {
        b.iter(|| {
            let mut t = MemoryTree::new();
            for h in &hashes {
                t.append(*h);
            }
            black_box(t.size())
        })
    });
    // The sequencer's path: leaf hashing plus tile and bundle building, batches of 1024.
    let leaves: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut l = vec![b'x'; 1000];
            l.extend(i.to_be_bytes());
            l
        })
        .collect();
    g.bench_function(format!("edge_tiles_and_bundles/{n}"), |b| {
        b.iter(|| {
            let mut e = Edge::empty();
            for chunk in leaves.chunks(1024) {
                black_box(e.append(chunk).map(|w| w.tiles.len()).unwrap_or(0));
            }
            black_box(e.root())
        })
    });
    g.finish();

    // Hash and store: one durable redb (and sled) commit per 1024-leaf batch, tiles and
    // bundles and both indexes, as the sequencer writes them.
    let n_store: u64 = if full_run() { 65_536 } else { 2048 };
    let mut g = c.benchmark_group("append_durable");
    g.throughput(Throughput::Elements(n_store));
    g.sample_size(10);
    for kind in [StoreKind::Redb, StoreKind::Sled] {
        g.bench_function(format!("{kind}/{n_store}_in_batches_of_1024"), |b| {
            b.iter_batched(
                || tempfile::tempdir().map(|d| (open_store(kind, d.path()), d)),
                |dir| {
                    let Ok((Ok(store), _d)) = dir else {
                        panic!("temp store")
                    };
                    let mut e = Edge::empty();
                    for (k, chunk) in leaves[..n_store as usize].chunks(1024).enumerate() {
                        let old = e.size();
                        let w = e.append(chunk).map_err(|x| x.to_string());
                        let w = w.unwrap_or_default();
                        let base = (k * 1024) as u64;
                        let batch = Batch {
                            old_size: old,
                            new_state: TreeState {
                                size: e.size(),
                                root: e.root(),
                            },
                            tiles: Edge::tile_list(&w),
                            bundles: w.bundles.into_iter().collect(),
                            leaf_index: chunk
                                .iter()
                                .enumerate()
                                .map(|(i, l)| (leaf_hash(l), base + i as u64))
                                .collect(),
                            entry_index: chunk
                                .iter()
                                .enumerate()
                                .map(|(i, l)| (sha256(l), base + i as u64))
                                .collect(),
                            meta: Vec::new(),
                            checkpoint: None,
                        };
                        assert!(store.append(&batch).is_ok());
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// Inclusion and consistency proofs at 10^6 and 10^7 leaves.
fn proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("proofs");
    for n in sizes() {
        // The stored-hash Vec (Go tlog's scheme, ~2 hashes per leaf, 640 MB at 10^7),
        // then the tiles the server would store for the same tree.
        let mut tree = MemoryTree::new();
        for k in 0..n {
            tree.append(sha256(&k.to_be_bytes()));
        }
        let mut tiles = HashMap::new();
        for tile in candor_core::tiles::tiles_for_size(n) {
            if let Ok(data) = candor_core::tiles::read_tile_data(tile, &tree) {
                tiles.insert((tile.level, tile.index), data);
            }
        }
        let tiles = MemTiles(tiles);
        let reader = TileHashReader::new(n, &tiles);
        // The server's reader: the same tiles with the store's cache of the expensive
        // (height >= 4 within a tile) stored hashes, warmed by criterion's warm-up.
        let cached = TileHashReader::new(n, &tiles).with_cache(Some(Default::default()));
        let root = tree.root();
        let mut k = 0u64;
        g.bench_function(format!("inclusion/memory/{n}"), |b| {
            b.iter(|| {
                k = (k + 7_919_993) % n;
                black_box(tree.inclusion_proof(k, n).map(|p| p.len()).unwrap_or(0))
            })
        });
        g.bench_function(format!("inclusion/tiles/{n}"), |b| {
            b.iter(|| {
                k = (k + 7_919_993) % n;
                black_box(
                    merkle::inclusion_proof(k, n, &reader)
                        .map(|p| p.len())
                        .unwrap_or(0),
                )
            })
        });
        g.bench_function(format!("inclusion/tiles_cached/{n}"), |b| {
            b.iter(|| {
                k = (k + 7_919_993) % n;
                black_box(
                    merkle::inclusion_proof(k, n, &cached)
                        .map(|p| p.len())
                        .unwrap_or(0),
                )
            })
        });
        g.bench_function(format!("consistency/memory/{n}"), |b| {
            b.iter(|| {
                k = (k + 7_919_993) % n;
                black_box(
                    tree.consistency_proof(k.max(1), n)
                        .map(|p| p.len())
                        .unwrap_or(0),
                )
            })
        });
        g.bench_function(format!("consistency/tiles/{n}"), |b| {
            b.iter(|| {
                k = (k + 7_919_993) % n;
                black_box(
                    merkle::consistency_proof(k.max(1), n, &reader)
                        .map(|p| p.len())
                        .unwrap_or(0),
                )
            })
        });
        g.bench_function(format!("consistency/tiles_cached/{n}"), |b| {
            b.iter(|| {
                k = (k + 7_919_993) % n;
                black_box(
                    merkle::consistency_proof(k.max(1), n, &cached)
                        .map(|p| p.len())
                        .unwrap_or(0),
                )
            })
        });
        // Verification of what was proved, for completeness.
        let idx = n / 3;
        let p = tree.inclusion_proof(idx, n).unwrap_or_default();
        let leaf = tree.leaf_hash(idx).unwrap_or_default();
        g.bench_function(format!("verify_inclusion/{n}"), |b| {
            b.iter(|| black_box(merkle::verify_inclusion(idx, n, &leaf, &p, &root).is_ok()))
        });
    }
    g.finish();
}

/// A real receipt: a log key, a company key registered at index 0, the company's
/// entry at index `size - 1` of a tree of `size` leaves, a signed checkpoint.
fn receipt_fixture(size: u64) -> (Receipt, candor_core::note::VerifierKey) {
    let log = SignerKey::generate("bench.example/log").unwrap_or_else(|e| panic!("{e}"));
    let company = SignerKey::generate("shop.example").unwrap_or_else(|e| panic!("{e}"));
    let reg_entry = samples::company_key(
        "shop.example",
        company.verifier().verifying_key(),
        KeyAction::Register,
    );
    let reg = SignedEntry::sign(reg_entry, log.signing_key(), log.verifier().key_id())
        .unwrap_or_else(|e| panic!("{e}"));
    let reg_leaf = Leaf::new(reg, samples::decision_time())
        .to_bytes()
        .unwrap_or_else(|e| panic!("{e}"));
    let entry = SignedEntry::sign(
        samples::load_targeting_decision("shop.example", 42),
        company.signing_key(),
        company.verifier().key_id(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let leaf = Leaf::new(entry, samples::decision_time())
        .to_bytes()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tree = MemoryTree::new();
    tree.append(leaf_hash(&reg_leaf));
    for h in leaf_hashes(size - 2) {
        tree.append(h);
    }
    let index = tree.append(leaf_hash(&leaf));
    let cp = Checkpoint {
        origin: "bench.example/log".into(),
        size,
        root: tree.root(),
        extensions: Vec::new(),
    };
    let note = sign_checkpoint(&cp, &log).unwrap_or_else(|e| panic!("{e}"));
    let tlog = TlogProof {
        extra: None,
        index,
        proof: tree.inclusion_proof(index, size).unwrap_or_default(),
        checkpoint: note,
    };
    let receipt = Receipt {
        log: "bench.example/log".into(),
        index,
        leaf: B64.encode(&leaf),
        leaf_hash: Some(leaf_hash(&leaf).to_hex()),
        tlog_proof: String::from_utf8(tlog.to_bytes()).unwrap_or_default(),
        company_key: Some(CompanyKeyProof {
            index: 0,
            leaf: B64.encode(&reg_leaf),
            proof: tree
                .inclusion_proof(0, size)
                .unwrap_or_default()
                .iter()
                .map(Hash::to_base64)
                .collect(),
        }),
        subject: None,
        disclosure_header: None,
    };
    (receipt, log.verifier())
}

/// Receipt verification, checkpoint signing, entry canonicalisation and parsing.
fn crypto_and_entries(c: &mut Criterion) {
    let size = if full_run() { 1 << 20 } else { 1 << 10 };
    let (receipt, vkey) = receipt_fixture(size);
    let v = verify_receipt(&receipt, &vkey, None);
    assert!(
        v.is_valid(),
        "fixture receipt must verify: {:?}",
        v.first_failure()
    );
    let mut g = c.benchmark_group("receipt");
    g.bench_function(format!("verify/size_{size}"), |b| {
        b.iter(|| black_box(verify_receipt(&receipt, &vkey, None).is_valid()))
    });
    let json = serde_json::to_vec(&receipt).unwrap_or_default();
    g.bench_function("parse_and_verify_json", |b| {
        b.iter(|| {
            let r = Receipt::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
            black_box(verify_receipt(&r, &vkey, None).is_valid())
        })
    });
    g.finish();

    let log = SignerKey::generate("bench.example/log").unwrap_or_else(|e| panic!("{e}"));
    let cp = Checkpoint {
        origin: "bench.example/log".into(),
        size: 10_000_000,
        root: sha256(b"root"),
        extensions: Vec::new(),
    };
    c.bench_function("checkpoint/sign", |b| {
        b.iter(|| black_box(sign_checkpoint(&cp, &log).map(|n| n.len()).unwrap_or(0)))
    });

    let company = SignerKey::generate("shop.example").unwrap_or_else(|e| panic!("{e}"));
    let entry = samples::load_targeting_decision("shop.example", 7);
    let signed = SignedEntry::sign(
        entry.clone(),
        company.signing_key(),
        company.verifier().key_id(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let line = serde_json::to_vec(&signed).unwrap_or_default();
    let mut g = c.benchmark_group("entry");
    g.bench_function("canonical_bytes_jcs", |b| {
        b.iter(|| black_box(entry.canonical_bytes().map(|v| v.len()).unwrap_or(0)))
    });
    // The same bytes from serde_json_canonicalizer (no integer-profile check), and
    // through a serde_json::Value, the path of `jcs::canonicalize`.
    g.bench_function("canonical_bytes_crate", |b| {
        b.iter(|| {
            black_box(
                serde_json_canonicalizer::to_vec(&entry)
                    .map(|v| v.len())
                    .unwrap_or(0),
            )
        })
    });
    let value = serde_json::to_value(&entry).unwrap_or_default();
    g.bench_function("canonical_value_own", |b| {
        b.iter(|| {
            black_box(
                candor_core::jcs::to_canonical(&value)
                    .map(|v| v.len())
                    .unwrap_or(0),
            )
        })
    });
    g.bench_function("canonicalize_value", |b| {
        b.iter(|| {
            black_box(
                candor_core::jcs::canonicalize(&value)
                    .map(|v| v.len())
                    .unwrap_or(0),
            )
        })
    });
    g.bench_function("entry_hash", |b| {
        b.iter(|| black_box(entry.entry_hash().map(|h| h.0[0]).unwrap_or(0)))
    });
    g.bench_function("parse_submission_line", |b| {
        b.iter(|| black_box(SignedEntry::parse_json(&line).is_ok()))
    });
    g.bench_function("validate", |b| {
        b.iter(|| black_box(entry.validate().is_ok()))
    });
    g.bench_function("leaf_to_bytes", |b| {
        let leaf = Leaf::new(signed.clone(), samples::decision_time());
        b.iter(|| black_box(leaf.to_bytes().map(|v| v.len()).unwrap_or(0)))
    });
    g.finish();
}

/// RFC 6962 interior-node hashing for rs_merkle: leaves are given as RFC 6962 leaf
/// hashes; a lone left node is carried up unchanged, as RFC 6962's left-balanced tree.
#[derive(Clone)]
struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        sha256(data).0
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}

/// The same job in three crates: build from N leaves and take the root; prove
/// inclusion in the built tree. All three must agree on the root (checked).
fn other_crates(c: &mut Criterion) {
    let n: u64 = if full_run() { 1 << 20 } else { 1 << 10 };
    let data: Vec<[u8; 32]> = (0..n).map(|i| sha256(&i.to_be_bytes()).0).collect();
    let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();

    let candor_tree = MemoryTree::from_leaf_hashes(&hashes);
    let raw: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
    let rs = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&raw);
    let mut ct = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, [u8; 32]>::new();
    for d in &data {
        ct.push(*d);
    }
    let root = candor_tree.root();
    assert_eq!(rs.root(), Some(root.0), "rs_merkle agrees on the root");
    assert_eq!(ct.root().as_bytes().as_slice(), &root.0, "ct-merkle agrees");

    let mut g = c.benchmark_group("vs_crates");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("build_root/candor/{n}"), |b| {
        b.iter(|| {
            let mut t = MemoryTree::new();
            for d in &data {
                t.append(leaf_hash(d));
            }
            black_box(t.root())
        })
    });
    g.bench_function(format!("build_root/rs_merkle/{n}"), |b| {
        b.iter(|| {
            let leaves: Vec<[u8; 32]> = data.iter().map(|d| leaf_hash(d).0).collect();
            black_box(rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&leaves).root())
        })
    });
    g.bench_function(format!("build_root/ct_merkle/{n}"), |b| {
        b.iter(|| {
            let mut t =
                ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, [u8; 32]>::new();
            for d in &data {
                t.push(*d);
            }
            black_box(t.root())
        })
    });
    g.throughput(Throughput::Elements(1));
    let mut k = 0u64;
    g.bench_function(format!("inclusion/candor/{n}"), |b| {
        b.iter(|| {
            k = (k + 7_919) % n;
            black_box(
                candor_tree
                    .inclusion_proof(k, n)
                    .map(|p| p.len())
                    .unwrap_or(0),
            )
        })
    });
    g.bench_function(format!("inclusion/rs_merkle/{n}"), |b| {
        b.iter(|| {
            k = (k + 7_919) % n;
            black_box(rs.proof(&[k as usize]).proof_hashes().len())
        })
    });
    g.bench_function(format!("inclusion/ct_merkle/{n}"), |b| {
        b.iter(|| {
            k = (k + 7_919) % n;
            black_box(ct.prove_inclusion(k as usize).as_bytes().len())
        })
    });
    g.finish();
}

/// Ed25519 verification of ~1 KB entry messages: dalek's `verify_strict`, Candor's
/// rule (`ed25519_strict::verify`, cofactored), and one batch equation over 256
/// signatures (per signature), ed25519-dalek's (cofactorless) and Candor's
/// (cofactored), on whichever backend curve25519-dalek picked at run time (AVX-512
/// IFMA on these machines, see .cargo/config.toml).
fn ed25519(c: &mut Criterion) {
    use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
    let n = 256;
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&sha256(&[i as u8, 1]).0))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{i:04} {}", "entry ".repeat(170)).into_bytes())
        .collect();
    let sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let mut g = c.benchmark_group("ed25519");
    g.bench_function("verify_strict_dalek", |b| {
        b.iter(|| black_box(vks[0].verify_strict(&msgs[0], &sigs[0]).is_ok()))
    });
    g.bench_function("verify_strict_candor", |b| {
        b.iter(|| {
            black_box(candor_core::ed25519_strict::verify(&vks[0], &msgs[0], &sigs[0]).is_ok())
        })
    });
    // A signature whose R is off by a point of order 8: valid by Candor's rule, and
    // the one kind for which single verification decodes R (the cofactored check).
    let torsion_r = {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};
        let r = Scalar::from(123_456_789u64);
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(vks[0].as_bytes());
        h.update(&msgs[0]);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        Signature::from_components(big_r.to_bytes(), (r + k * keys[0].to_scalar()).to_bytes())
    };
    assert!(candor_core::ed25519_strict::verify(&vks[0], &msgs[0], &torsion_r).is_ok());
    g.bench_function("verify_candor_torsion_r", |b| {
        b.iter(|| {
            black_box(candor_core::ed25519_strict::verify(&vks[0], &msgs[0], &torsion_r).is_ok())
        })
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("verify_batch_256", |b| {
        b.iter(|| black_box(ed25519_dalek::verify_batch(&refs, &sigs, &vks).is_ok()))
    });
    // The same 256 signatures by 256 keys, then by 4 keys (a log's usual batch: many
    // entries, few companies), with Candor's batch, which sums each key's terms.
    g.bench_function("verify_batch_256_candor_256_keys", |b| {
        b.iter(|| black_box(candor_core::ed25519_strict::verify_batch(&refs, &sigs, &vks).is_ok()))
    });
    let few: Vec<Signature> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 4].sign(m))
        .collect();
    let few_vks: Vec<VerifyingKey> = (0..n).map(|i| vks[i % 4]).collect();
    g.bench_function("verify_batch_256_dalek_4_keys", |b| {
        b.iter(|| black_box(ed25519_dalek::verify_batch(&refs, &few, &few_vks).is_ok()))
    });
    g.bench_function("verify_batch_256_candor_4_keys", |b| {
        b.iter(|| {
            black_box(candor_core::ed25519_strict::verify_batch(&refs, &few, &few_vks).is_ok())
        })
    });
    // Eight different batches of 256 (4 keys) verified in turn, so that the batch
    // equation's weights and points change from call to call as they do in a log;
    // one batch verified again and again lets the CPU learn the multiplication's
    // data-dependent branches when its weights repeat.
    let varied: Vec<(Vec<Vec<u8>>, Vec<Signature>)> = (0..8u8)
        .map(|v| {
            let m: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| [&[v][..], m.as_slice()].concat())
                .collect();
            let s = m
                .iter()
                .enumerate()
                .map(|(i, m)| keys[i % 4].sign(m))
                .collect();
            (m, s)
        })
        .collect();
    let varied_refs: Vec<Vec<&[u8]>> = varied
        .iter()
        .map(|(m, _)| m.iter().map(Vec::as_slice).collect())
        .collect();
    let mut turn = 0;
    g.bench_function("verify_batch_256_candor_4_keys_varied", |b| {
        b.iter(|| {
            turn = (turn + 1) % varied.len();
            black_box(
                candor_core::ed25519_strict::verify_batch(
                    &varied_refs[turn],
                    &varied[turn].1,
                    &few_vks,
                )
                .is_ok(),
            )
        })
    });
    // Decoding the 256 signatures' R: one at a time (curve25519-dalek), and eight at a
    // time where the CPU has AVX-512 IFMA (`ed25519_points`).
    let rs: Vec<[u8; 32]> = few.iter().map(|s| *s.r_bytes()).collect();
    g.bench_function("decompress_256_each", |b| {
        b.iter(|| black_box(candor_core::ed25519_points::decompress_each(&rs)))
    });
    g.bench_function(
        format!(
            "decompress_256_many_{}",
            if candor_core::ed25519_points::vectorised() {
                "ifma"
            } else {
                "fallback"
            }
        ),
        |b| b.iter(|| black_box(candor_core::ed25519_points::decompress_many(&rs))),
    );
    // The 256 challenges SHA-512(R ‖ A ‖ M): one at a time (sha2), and eight at a time
    // where the CPU has AVX-512 (`sha512_lanes`).
    let challenge_input: Vec<[&[u8]; 3]> = few
        .iter()
        .zip(&few_vks)
        .zip(&refs)
        .map(|((s, k), m)| [s.r_bytes().as_slice(), k.as_bytes().as_slice(), *m])
        .collect();
    g.bench_function("challenges_256_each", |b| {
        b.iter(|| black_box(candor_core::sha512_lanes::sha512_each(&challenge_input)))
    });
    g.bench_function(
        format!(
            "challenges_256_many_{}",
            if candor_core::sha512_lanes::vectorised() {
                "avx512"
            } else {
                "fallback"
            }
        ),
        |b| b.iter(|| black_box(candor_core::sha512_lanes::sha512_many(&challenge_input))),
    );
    g.finish();
}

/// The work `candor_core::par` spreads over the cores: the monitor's per-leaf parse and
/// entry hash, and Ed25519 batch verification split into one equation per range.
fn parallel(c: &mut Criterion) {
    use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
    let n: usize = if full_run() { 4096 } else { 256 };
    let companies: Vec<SignerKey> = (0..4)
        .map(|i| SignerKey::generate(&format!("c{i}.example")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let leaves: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let company = &companies[i % 4];
            let entry = samples::load_targeting_decision(company.name(), i as u64);
            let signed =
                SignedEntry::sign(entry, company.signing_key(), company.verifier().key_id())
                    .unwrap_or_else(|e| panic!("{e}"));
            Leaf::new(signed, samples::decision_time())
                .to_bytes()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let keys: Vec<SigningKey> = (0..4u8)
        .map(|i| SigningKey::from_bytes(&sha256(&[i, 2]).0))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{i:05} {}", "entry ".repeat(170)).into_bytes())
        .collect();
    let sigs: Vec<Signature> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 4].sign(m))
        .collect();
    let vks: Vec<VerifyingKey> = (0..n).map(|i| keys[i % 4].verifying_key()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();

    let mut g = c.benchmark_group("par");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("leaf_parse_and_hash/{n}"), |b| {
        b.iter(|| {
            let hashes = candor_core::par::map(&leaves, 16, |bytes| {
                Leaf::parse(bytes)
                    .and_then(|l| l.entry.entry_hash())
                    .map(|h| h.0[0])
            });
            black_box(hashes.len())
        })
    });
    g.bench_function(format!("verify_batch_parallel/{n}_4_keys"), |b| {
        b.iter(|| black_box(candor_core::entry::verify_batch_parallel(&refs, &sigs, &vks).is_ok()))
    });
    g.finish();
}

criterion_group!(
    benches,
    append,
    proofs,
    crypto_and_entries,
    ed25519,
    other_crates,
    parallel
);
criterion_main!(benches);
