struct Connection;

#[qtasks::task]
async fn query(conn: Connection, sql: String) -> usize {
    let _ = conn;
    sql.len()
}

fn main() {}
