//! A large byte argument that reaches the task without a copy: `Blob`.
//!
//! ```text
//! cargo run --example blob
//! ```

use std::time::Duration;

use qtasks::prelude::*;
use qtasks::Blob;

/// Counts the zero bytes of an upload.
#[qtasks::task]
async fn count_zeros(upload: Blob) -> usize {
    upload.iter().filter(|&&b| b == 0).count()
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    let app = App::builder().name("blob-example").build()?;
    let worker = app.spawn_worker();
    let mut bytes = vec![1u8; 1 << 20];
    bytes[..1000].fill(0);
    // One copy, by the encoder; the body reads the buffer the call was encoded into.
    let upload = Blob::from(bytes);
    let done = count_zeros
        .add_task(upload)
        .await?
        .wait(Duration::from_secs(5))
        .await?;
    println!("zero bytes in the 1 MiB upload: {:?}", done.returning);
    worker.shutdown().await
}
