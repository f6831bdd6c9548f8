//! CORS for browser clients, by an explicit list of allowed origins. Native mobile apps do not use it.

pub struct Cors {
    origins: Vec<String>,
    any: bool,
}

const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Response headers a page's script may read besides the safelisted ones: how long to wait after a 429.
const EXPOSE_HEADERS: &str = "Retry-After";
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
            return Err("CORS_ALLOWED_ORIGINS may not be * unless ENVIRONMENT is development".into());
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

    /// The CORS headers an answer needs for `origin`; `preflight` adds the ones an OPTIONS answer needs.
    pub fn headers(&self, origin: Option<&str>, preflight: bool) -> Vec<(&'static str, String)> {
        if self.origins.is_empty() {
            return Vec::new();
        }
        let mut headers = vec![("Vary", "Origin".to_owned())];
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            headers.push(("Access-Control-Allow-Origin", origin.to_owned()));
            if preflight {
                headers.push(("Access-Control-Allow-Methods", ALLOW_METHODS.to_owned()));
                headers.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.to_owned()));
                headers.push(("Access-Control-Max-Age", MAX_AGE_SECONDS.to_owned()));
            } else {
                headers.push(("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_owned()));
            }
        }
        headers
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

    #[test]
    fn only_allowed_origins_get_cors_headers_and_only_preflights_get_the_rest() {
        let cors = Cors::parse("https://app.example.com", true).unwrap();
        let names = |h: Vec<(&'static str, String)>| h.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(cors.headers(Some("https://evil.example.com"), true)), ["Vary"]);
        assert_eq!(names(cors.headers(None, false)), ["Vary"]);
        assert_eq!(
            names(cors.headers(Some("https://app.example.com"), false)),
            ["Vary", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers"]
        );
        let preflight = cors.headers(Some("https://app.example.com"), true);
        assert_eq!(preflight.len(), 5);
        let methods = &preflight.iter().find(|(n, _)| *n == "Access-Control-Allow-Methods").unwrap().1;
        assert!(methods.contains("DELETE"), "{methods}");
        let exposed = cors.headers(Some("https://app.example.com"), false);
        assert_eq!(exposed.last().unwrap().1, "Retry-After");
        assert!(Cors::parse("", true).unwrap().headers(Some("https://app.example.com"), true).is_empty());
    }
}
