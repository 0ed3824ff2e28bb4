//! `Blob` arguments: raw bytes that reach the task body without a copy. On the memory backend
//! the body's bytes are a view into the very buffer the producer encoded (the one the record
//! keeps), and a `Blob` result comes back whole.

mod common;

use common::{builder, DEADLINE};
use qtasks::Blob;

/// Returns where its bytes lie and a checksum of them.
#[qtasks::task]
async fn digest(data: Blob) -> (u64, u64, usize) {
    let sum = data.iter().map(|&b| u64::from(b)).sum();
    (data.as_ptr() as u64, sum, data.len())
}

/// Echoes its bytes back, reversed.
#[qtasks::task]
async fn reverse(data: Blob) -> Blob {
    let mut bytes = data.to_vec();
    bytes.reverse();
    Blob::from(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_argument_reaches_the_body_without_a_copy() {
    let app = builder("blob").build().unwrap();
    let worker = app.spawn_worker();
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let task = digest.add_task(Blob::from(data)).await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    let (at, sum, len) = done.returning.unwrap();
    assert_eq!((sum, len), (expected, 64 * 1024));
    // The record's arguments are the buffer the producer encoded: the body read from it.
    let record = app.get(task.uuid).await.unwrap().unwrap();
    let stored = record.args.as_bytes().as_ptr_range();
    assert!(
        stored.contains(&(at as usize as *const u8)),
        "the body's bytes at {at:#x} are a copy, not in the stored arguments at {stored:?}"
    );

    let done = reverse
        .add_task(Blob::from_static(b"abc"))
        .await
        .unwrap()
        .wait(DEADLINE)
        .await
        .unwrap();
    assert_eq!(done.returning.as_deref(), Some(&b"cba"[..]));
    worker.shutdown().await.unwrap();
}
