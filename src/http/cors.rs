//! CORS for browser clients, by an explicit list of allowed origins. Native mobile apps do not use it.

use worker::Response;

pub struct Cors {
    origins: Vec<String>,
    any: bool,
}

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
const MAX_AGE_SECONDS: &str = "86400";

impl Cors {
    /// Reads a comma-separated list of exact origins (`https://app.example.com`). `*` allows every origin and is
    /// refused in production.
    pub fn parse(list: &str, production: bool) -> Result<Cors, String> {
        let origins: Vec<String> =
            list.split(',').map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect();
        let any = origins.iter().any(|o| o == "*");
        if any && production {
            return Err("CORS_ALLOWED_ORIGINS may not be * when ENVIRONMENT is production".into());
        }
        if let Some(bad) = origins.iter().find(|o| *o != "*" && !o.starts_with("https://") && !o.starts_with("http://"))
        {
            return Err(format!("CORS_ALLOWED_ORIGINS entry {bad:?} is not an origin like https://app.example.com"));
        }
        Ok(Cors { origins, any })
    }

    fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o == origin)
    }

    /// Adds the CORS headers a response needs for `origin`; `preflight` adds the ones an OPTIONS answer needs.
    pub fn decorate(&self, response: Response, origin: Option<&str>, preflight: bool) -> Response {
        if self.origins.is_empty() {
            return response;
        }
        let headers = response.headers();
        // Header names and values are ASCII we control or an origin the client sent; a failure only drops a header.
        let _ = headers.append("Vary", "Origin");
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            let _ = headers.set("Access-Control-Allow-Origin", origin);
            if preflight {
                let _ = headers.set("Access-Control-Allow-Methods", ALLOW_METHODS);
                let _ = headers.set("Access-Control-Allow-Headers", ALLOW_HEADERS);
                let _ = headers.set("Access-Control-Max-Age", MAX_AGE_SECONDS);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_exactly_and_wildcards_refused_in_production() {
        let cors = Cors::parse(" https://app.example.com/, http://localhost:3000 ", true).unwrap();
        assert!(cors.allows("https://app.example.com"));
        assert!(cors.allows("http://localhost:3000"));
        assert!(!cors.allows("https://evil.example.com"));
        assert!(Cors::parse("*", true).is_err());
        assert!(Cors::parse("*", false).unwrap().allows("https://anything.example"));
        assert!(Cors::parse("app.example.com", false).is_err());
    }
}
