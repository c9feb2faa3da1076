use super::*;

struct Req {
    code: i64,
    header: Option<&'static str>,
    mtls: bool,
}

impl Attributes for Req {
    fn attr(&self, attr: &Attr) -> Value<'_> {
        match attr {
            Attr::ResponseCode => Value::Int(self.code),
            Attr::RequestHeader(h) if h == "x-user" => self
                .header
                .map(|v| Value::Str(v.into()))
                .unwrap_or(Value::Absent),
            Attr::ConnectionMtls => Value::Bool(self.mtls),
            Attr::RequestMethod => Value::Str("GET".into()),
            Attr::ResponseFlags => Value::Str("UH".into()),
            _ => Value::Absent,
        }
    }
}

fn req(code: i64) -> Req {
    Req {
        code,
        header: Some("alice"),
        mtls: true,
    }
}

#[test]
fn conditions_users_write_evaluate_as_envoy_does() {
    // (expression, status, expected) — Istio docs' examples and their friends.
    let rows: &[(&str, i64, bool)] = &[
        ("response.code >= 400", 503, true),
        ("response.code >= 400", 200, false),
        ("response.code == 200", 200, true),
        ("response.code != 200", 200, false),
        ("response.code < 300", 204, true),
        ("response.code > 499 && response.code <= 599", 500, true),
        ("response.code == 404 || response.code == 503", 503, true),
        ("!(response.code >= 400)", 200, true),
        ("request.headers['x-user'] == 'alice'", 200, true),
        ("request.headers['X-User'] == \"bob\"", 200, false),
        ("connection.mtls && request.method == 'GET'", 200, true),
        ("!connection.mtls", 200, false),
        ("response.flags != '-'", 200, true),
        ("true", 200, true),
    ];
    for (text, code, want) in rows {
        let e = Expr::parse_condition(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.matches(&req(*code)), *want, "{text} at {code}");
    }
}

#[test]
fn an_absent_header_compares_false_either_way() {
    let r = Req {
        code: 200,
        header: None,
        mtls: false,
    };
    for text in [
        "request.headers['x-user'] == 'alice'",
        "request.headers['x-user'] != 'alice'",
    ] {
        assert!(!Expr::parse_condition(text).unwrap().matches(&r), "{text}");
    }
}

#[test]
fn tag_values_are_literals_or_attributes() {
    let r = req(200);
    let v = Expr::parse_value("request.headers['x-user']").unwrap();
    assert_eq!(v.value(&r).to_string(), "alice");
    let v = Expr::parse_value("'fixed'").unwrap();
    assert_eq!(v.value(&r).to_string(), "fixed");
    assert_eq!(
        Expr::parse_value("response.code").unwrap().value(&r),
        Value::Int(200)
    );
}

#[test]
fn refuses_what_it_does_not_understand_naming_the_expression() {
    let rows: &[(&str, &str)] = &[
        ("response.code >= '400'", "cannot compare"),
        ("response.code + 1 > 2", "unsupported character"),
        ("request.size > 10", "unsupported attribute request.size"),
        ("size(request.headers) > 1", "function size"),
        ("request.headers['a'].startsWith('x')", "unsupported"),
        ("response.code", "must be a condition"),
        ("response.code >= 400 &&", "unexpected end"),
        ("(response.code >= 400", "missing )"),
        ("'x' in request.headers", "unsupported at \"in\""),
        ("", "empty"),
        ("request.headers['x", "unterminated"),
    ];
    for (text, needle) in rows {
        let e = Expr::parse_condition(text).unwrap_err();
        assert_eq!(e.expr, *text);
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
    let e = Expr::parse_value("response.code == 200").unwrap_err();
    assert!(e.reason.contains("quoted string"), "{e}");
}
