//! Compiles proto/stampede.proto with a pure-Rust protobuf compiler: no system protoc needed.
//! Without the `wire` feature (the results and report crates) there is no gRPC code to make.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "wire")]
    {
        let proto_dir = "../proto";
        let file = "../proto/stampede.proto";
        println!("cargo:rerun-if-changed={file}");
        let fds = protox::compile([file], [proto_dir])?;
        tonic_prost_build::configure().compile_fds(fds)?;
    }
    Ok(())
}
