//! Conventions between a parent process and the children it starts, and between versions.

/// The wire protocol version. Bump it whenever `proto/stampede.proto` changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// Stampede's version, as built.
pub const STAMPEDE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The line prefix a child (agent or sim) prints on stdout once its listener is bound, followed by
/// the socket address. The parent reads it to learn the port chosen for `127.0.0.1:0`.
pub const LISTENING_PREFIX: &str = "listening on ";

/// Parses a `listening on ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<std::net::SocketAddr> {
    line.trim()
        .strip_prefix(LISTENING_PREFIX)?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_round_trips() {
        let addr = parse_listening_line("listening on 127.0.0.1:4321\n").unwrap();
        assert_eq!(addr.port(), 4321);
        assert!(parse_listening_line("listening on nowhere").is_none());
        assert!(parse_listening_line("ready 127.0.0.1:1").is_none());
    }
}
