use qtasks::Yield;

#[qtasks::task]
async fn steps(a: Yield<u8>, b: Yield<u8>) {
    a.send(1).await;
    b.send(2).await;
}

fn main() {}
