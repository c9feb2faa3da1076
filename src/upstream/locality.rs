//! Where a workload runs (region and zone), and how close two localities
//! are: the input to locality-aware load balancing. Parsed from
//! `--locality`, EndpointSlice zones and ServiceEntry endpoints.

use std::fmt;
use std::str::FromStr;

/// Where a workload runs: Kubernetes `topology.kubernetes.io/region` and
/// `zone`. An empty region means unknown (EndpointSlices carry only the
/// zone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
}

impl Locality {
    /// How close `other` is to `self`: 0 same zone, 1 same region, 2 other.
    /// An unknown region on either side is taken to match when the zones do:
    /// cloud zone names (`us-east1-b`) are unique across regions.
    pub(crate) fn tier(&self, other: &Locality) -> u8 {
        let region_known = !self.region.is_empty() && !other.region.is_empty();
        let same_region = region_known && self.region == other.region;
        let same_zone = !self.zone.is_empty() && self.zone == other.zone;
        if same_zone && (same_region || !region_known) {
            0
        } else if same_region {
            1
        } else {
            2
        }
    }
}

/// Parses `region`, `region/zone` or Istio's `region/zone/subzone` (the
/// subzone is ignored).
impl FromStr for Locality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        let region = parts.next().unwrap_or("").trim().to_string();
        let zone = parts.next().unwrap_or("").trim().to_string();
        if region.is_empty() && zone.is_empty() {
            return Err(format!("invalid locality {s:?}: expected region/zone"));
        }
        Ok(Self { region, zone })
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.zone.is_empty() {
            f.write_str(&self.region)
        } else {
            write!(f, "{}/{}", self.region, self.zone)
        }
    }
}
