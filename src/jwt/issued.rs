//! The claims of the tokens tollgate issues, as they are written (serialized once per token).

use crate::domain::cnf::Confirmation;
use serde::Serialize;

/// `aud` as written: a string for one audience, an array for several (RFC 7519 §4.1.3).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AudienceOut<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl<'a> AudienceOut<'a> {
    pub fn from_list(list: &'a [String]) -> Self {
        match list {
            [one] => AudienceOut::One(one),
            many => AudienceOut::Many(many),
        }
    }
}

/// The claims of a token tollgate issues.
#[derive(Debug, Serialize)]
pub struct IssuedClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: AudienceOut<'a>,
    /// Absent on immortal tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub iat: i64,
    pub nbf: i64,
    pub jti: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    pub gid: &'a str,
    /// Tenant tokens (seed 003): who in the tenant directory they are for.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a TenantClaims>,
    /// What a sender-constrained token is bound to (RFC 7800 `cnf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<CnfOut>,
}

/// `cnf` as written: `{"jkt": ...}` (RFC 9449 §6.1) or `{"x5t#S256": ...}` (RFC 8705
/// §3.1).
#[derive(Debug)]
pub struct CnfOut(pub Confirmation);

impl Serialize for CnfOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0.member(), &self.0.value())?;
        m.end()
    }
}

/// The tenant part of a tenant token: the user's tenant, project and directory entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantClaims {
    pub tenant_id: String,
    pub project_id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub groups: Vec<String>,
    /// `user` or `admin`.
    pub token_use: &'static str,
}
