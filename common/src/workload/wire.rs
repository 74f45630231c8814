//! The workload spec on the wire: JSON (in `LoadWorkloadRequest.spec_json`) with a version that
//! the agent checks before anything else, so that a controller and an agent of different
//! Stampede versions fail with a clear message rather than a serde error or a silently
//! misread field.

use serde::{Deserialize, Serialize};

use super::spec::WorkloadSpec;

/// The version of [`WorkloadSpec`]'s JSON form; raised with any change an older agent would
/// misread.
pub const WORKLOAD_SPEC_VERSION: u32 = 1;

/// A workload spec an agent cannot read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecWireError {
    /// The spec was written for another version of the JSON form (0: one with no version).
    #[error(
        "the workload spec is version {found} and this agent reads version {expected}: run the same Stampede version on the controller and its agents"
    )]
    Version { found: u32, expected: u32 },
    /// The bytes are not a spec's JSON.
    #[error("the workload spec is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What is sent: the version beside the spec's own fields.
#[derive(Serialize)]
struct Outgoing<'a> {
    version: u32,
    #[serde(flatten)]
    spec: &'a WorkloadSpec,
}

/// The version alone, read before the rest (other fields skipped).
#[derive(Deserialize)]
struct VersionOnly {
    #[serde(default)]
    version: u32,
}

impl WorkloadSpec {
    /// The spec as agents receive it: its JSON, with [`WORKLOAD_SPEC_VERSION`].
    ///
    /// # Errors
    /// When serde_json cannot encode it (a map with non-string keys; none here).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Outgoing {
            version: WORKLOAD_SPEC_VERSION,
            spec: self,
        })
    }

    /// Reads a spec written by [`WorkloadSpec::to_json`].
    ///
    /// # Errors
    /// [`SpecWireError::Version`] when it was written for another version (checked first, so a
    /// changed layout is reported as such), else [`SpecWireError::Json`].
    pub fn from_json(json: &[u8]) -> Result<WorkloadSpec, SpecWireError> {
        let VersionOnly { version } = serde_json::from_slice(json)?;
        if version != WORKLOAD_SPEC_VERSION {
            return Err(SpecWireError::Version {
                found: version,
                expected: WORKLOAD_SPEC_VERSION,
            });
        }
        Ok(serde_json::from_slice(json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_the_wire_and_another_version_is_refused() {
        let spec = WorkloadSpec::fixed(100, 10, true);
        let json = spec.to_json().unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
        assert_eq!(WorkloadSpec::from_json(&json).unwrap(), spec);

        let unversioned = serde_json::to_vec(&spec).unwrap();
        let newer = text.replacen("\"version\":1", "\"version\":2", 1);
        for (bytes, found) in [(unversioned, 0), (newer.into_bytes(), 2)] {
            let err = WorkloadSpec::from_json(&bytes).unwrap_err();
            assert!(
                matches!(err, SpecWireError::Version { found: f, expected: 1 } if f == found),
                "{err}"
            );
            assert!(err.to_string().contains("same Stampede version"), "{err}");
        }
        let err = WorkloadSpec::from_json(b"{\"version\":1,\"classes\":7}").unwrap_err();
        assert!(matches!(err, SpecWireError::Json(_)), "{err}");
    }
}
