//! Generates the message types, the server and the client of `proto/qtasks.proto` with the
//! protoc binary of `protoc-bin-vendored` (no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the protoc named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/qtasks.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/qtasks.proto"], &["proto"])?;
    Ok(())
}
