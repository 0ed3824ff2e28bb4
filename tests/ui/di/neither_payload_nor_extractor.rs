// A parameter that is neither a serializable task argument nor an extractor.
struct DbHandle;

#[qtasks::task]
async fn save(db: DbHandle, id: u64) -> u64 {
    let _ = db;
    id
}

fn main() {}
