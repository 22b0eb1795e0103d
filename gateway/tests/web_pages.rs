//! The members' web pages in standalone mode: the real binary, SQLite (and Postgres for
//! the usage and revenue series).
//!
//! - Over HTTP: sign-in sets an HttpOnly, SameSite=Strict cookie; a forged CSRF token, a
//!   POST from another origin, an expired or ended session and a customer are refused;
//!   a title of `<script>` is shown as text. Every kind of proposal opens through a form
//!   laid out for the method that decides it. The co-op page's usage by day and revenue
//!   by month match records written at the months' edges.
//! - In headless Chromium (Debian's `chromium`): the whole flow of `common/browser.rs`
//!   (proposing, commenting, voting with JavaScript on and off, the results and the new
//!   allocation); and approval, score, dot and consent ballots cast through their forms
//!   in four co-ops side by side, with their results read after the close. Every page
//!   is saved as a screenshot under `$CARGO_TARGET_TMPDIR/web-screenshots/`.

#![expect(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::browser::{
    self, Shots, accessible, api_json, axe_source, browser, check, member_tab, node, open, replace, submit,
    text, type_in,
};
use common::coop::{self as c};
use common::{Gateway, scenario};
use headless_chrome::Tab;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;

/// The scenario's co-op, with allocation proposals decided by majority and free-text
/// questions by ranked choice.
fn manifests(period: &str) -> tempfile::TempDir {
    manifests_with(period, "RankedChoice")
}

/// The same, with free-text questions decided by `question_method`.
fn manifests_with(period: &str, question_method: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let yaml = browser::coop_yaml(
        "commons",
        period,
        "{hub: Qwen/Qwen2.5-0.5B-Instruct}",
        question_method,
    );
    std::fs::write(dir.path().join("coop.yaml"), yaml).expect("the manifests are written");
    dir
}

/// A form body, `application/x-www-form-urlencoded`.
trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            body.append_pair(k.as_ref(), v.as_ref());
        }
        self.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.finish())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Signs `who` in with a token; returns the session cookie (`name=value`) and the
/// whole `Set-Cookie` header.
async fn sign_in(gw: &Gateway, key: &str) -> reqwest::Response {
    client()
        .post(gw.url("/governance/sign-in"))
        .form_body(&[("key", key)])
        .send()
        .await
        .unwrap()
}

fn session_cookie(r: &reqwest::Response) -> (String, String) {
    let set = r
        .headers()
        .get(SET_COOKIE)
        .expect("a session cookie is set")
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, set)
}

async fn page(gw: &Gateway, cookie: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(gw.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form with a CSRF token")
        + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_refuse_forged_forms_other_origins_expired_sessions_and_customers_and_escape_text() {
    let m = manifests("1h");
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &["--web-session-seconds", "3"]);
    let ana = c::token(c::SECRET, &c::claims("ana"));

    // Signed out: the sign-in form; a bad key is refused with the form again.
    let (status, html) = page(&gw, "", "/governance").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"sign-in\""), "{html}");
    let r = sign_in(&gw, "sk-synco-not-a-key").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // A customer is not a member.
    let r = sign_in(&gw, &c::token(c::SECRET, &c::claims("buyer"))).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Only members take part"));
    assert!(
        page(&gw, "synco_session=forged", "/governance/coop").await.0 == 401,
        "an unknown session shows the sign-in page"
    );

    // A member: a 303 to the proposals and a cookie the page's scripts cannot read.
    let r = sign_in(&gw, &ana).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/governance");
    let (cookie, set) = session_cookie(&r);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/governance", "Max-Age=3"] {
        assert!(set.contains(attribute), "{set}");
    }
    let (status, html) = page(&gw, &cookie, "/governance").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Signed in as <span id=\"member\">ana</span>"),
        "{html}"
    );
    assert!(!html.contains(&ana), "the key is never written into a page");
    let token = csrf(&html);

    // A title with markup is text; a forged token or another origin changes nothing.
    let title = "<script>alert(1)</script>";
    let form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("kind", "FreeText".to_owned()),
            ("title", title.to_owned()),
            ("options", "grid\nsolar".to_owned()),
        ]
    };
    let forged = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, &cookie)
        .form_body(&form(&"0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("security token does not match")
    );
    let elsewhere = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form_body(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
    let listed = api_json(&gw, "/v1/governance/proposals", &ana).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "nothing was proposed"
    );

    let made = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, gw.url(""))
        .form_body(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 303, "{}", made.text().await.unwrap());
    let at = made.headers()[LOCATION].to_str().unwrap().to_owned();
    let (status, html) = page(&gw, &cookie, &at).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains(title), "the title is escaped");

    // A member admission and a surplus price open through their forms too.
    for fields in [
        vec![
            ("kind", "MemberAdmission"),
            ("title", "Admit the mill"),
            ("member_name", "mill"),
            ("member_display_name", "The Mill"),
            ("member_class", "community"),
            ("member_identity", "mill"),
            ("member_organisation", "WorkerCoop"),
        ],
        vec![
            ("kind", "SurplusPrice"),
            ("title", "Sell less, dearer"),
            ("max_share", "20"),
            ("currency", "EUR"),
            ("price_input", "15"),
            ("price_output", "40"),
        ],
    ] {
        let mut sent = vec![("csrf", token.as_str())];
        sent.extend(fields);
        let made = client()
            .post(gw.url("/governance/new"))
            .header(COOKIE, &cookie)
            .form_body(&sent)
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 303, "{sent:?}: {}", made.text().await.unwrap());
        let at = made.headers()[LOCATION].to_str().unwrap().to_owned();
        let (_, html) = page(&gw, &cookie, &at).await;
        assert!(html.contains("id=\"phase\">Open<"), "{html}");
        assert!(
            html.contains("memberAdmission") || html.contains("surplusPrice"),
            "{html}"
        );
    }

    // Ending the session ends it on the server, not only in this browser.
    let out = client()
        .post(gw.url("/governance/sign-out"))
        .header(COOKIE, &cookie)
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(page(&gw, &cookie, "/governance/coop").await.0, 401);

    // An API key signs a member in as well as a token does.
    let key = c::create_key(&["--member", "ben"], data.path(), None);
    let r = sign_in(&gw, &key).await;
    assert_eq!(r.status(), 303);
    let (bens, _) = session_cookie(&r);
    assert!(
        page(&gw, &bens, "/governance")
            .await
            .1
            .contains("Signed in as <span id=\"member\">ben</span>")
    );

    // A session expires (here after 3 s).
    let (cookie, _) = session_cookie(&sign_in(&gw, &ana).await);
    assert_eq!(page(&gw, &cookie, "/governance/coop").await.0, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, html) = page(&gw, &cookie, "/governance/coop").await;
    assert_eq!(status, 401);
    assert!(html.contains("Your session has expired"), "{html}");
}

/// A ballot by one of the option methods or by consent, cast through the page with
/// the keyboard.
enum Ballot {
    Approve(&'static [&'static str]),
    /// Values for the option fields `#<prefix>-1`, `-2`, `-3` (grid, solar, wind).
    Numbers(&'static str, [&'static str; 3]),
    Position(&'static str),
}

/// Casts `ballot`; returns the receipt's text and, for dot points, the points the page
/// said were left before the ballot was sent.
fn cast(tab: &Tab, gw: &Gateway, question: &str, ballot: &Ballot) -> (String, String) {
    let mut left = String::new();
    open(tab, &gw.url(&format!("/governance/proposals/{question}")));
    match ballot {
        Ballot::Approve(options) => {
            for o in *options {
                check(tab, &format!("input[name=approve][value={o}]"));
            }
        }
        Ballot::Numbers(prefix, values) => {
            for (i, v) in values.iter().enumerate() {
                replace(tab, &format!("#{prefix}-{}", i + 1), v);
            }
            if *prefix == "points" {
                left = text(tab, "#points-left");
            }
        }
        Ballot::Position(p) => check(tab, &format!("input[name=position][value={p}]")),
    }
    submit(tab, "#cast", "#receipt");
    (text(tab, "#receipt"), left)
}

#[test]
fn approval_score_dot_and_consent_ballots_are_cast_in_chromium_and_their_results_read() {
    // For each method the bylaws decide questions by: what ana (JavaScript on), ben
    // (JavaScript off; dan delegates to him) and cleo cast, and what the result shows.
    type Case = (&'static str, [Ballot; 3], &'static [&'static str]);
    let cases: [Case; 4] = [
        (
            "Approval",
            [
                Ballot::Approve(&["grid", "wind"]),
                Ballot::Approve(&["grid"]),
                Ballot::Approve(&["solar"]),
            ],
            // grid: ana, ben and dan.
            &["grid won", "grid\t3"],
        ),
        (
            "Score",
            [
                Ballot::Numbers("score", ["4", "1", "0"]),
                Ballot::Numbers("score", ["2", "5", "0"]),
                Ballot::Numbers("score", ["0", "0", "5"]),
            ],
            // grid 4+2+2, solar 1+5+5, wind 5.
            &["solar won", "solar\t11", "grid\t8"],
        ),
        (
            "DotVoting",
            [
                Ballot::Numbers("points", ["6", "0", "4"]),
                Ballot::Numbers("points", ["0", "10", "0"]),
                Ballot::Numbers("points", ["10", "0", "0"]),
            ],
            // grid 16, solar 20, wind 4 of 40 points.
            &["solar\t20\t50%", "grid\t16\t40%", "wind\t4\t10%"],
        ),
        (
            "Consent",
            [
                Ballot::Position("Yes"),
                Ballot::Position("StandAside"),
                Ballot::Position("Block"),
            ],
            &["Rejected", "Blocked by: cleo", "Stood aside: ben"],
        ),
    ];
    let period = 45;
    let shots = Shots::new("standalone");
    let axe = &axe_source();
    // The four co-ops vote side by side, each in a browser of its own (a DevTools call
    // costs about 0.1 s, so a ballot costs seconds; one after another they take minutes).
    std::thread::scope(|scope| {
        for (method, ballots, shown) in &cases {
            let shots = &shots;
            scope.spawn(move || {
                // Allocations too are decided by the method: the form asks for options
                // with a plan each, or for a split (dot voting).
                let m = manifests_voting(
                    &format!("{period}s"),
                    &[("Allocation", method), ("FreeText", method)],
                );
                let data = tempfile::tempdir().unwrap();
                let gw = c::standalone(m.path(), data.path(), None, &[]);
                let browser = browser();
                let ana = member_tab(&browser, &gw, "ana", true);
                open(&ana, &gw.url("/governance/new?kind=Allocation"));
                let layout = if *method == "DotVoting" {
                    "#split"
                } else if *method == "Consent" {
                    "#floor-1"
                } else {
                    "#o2_floor-1"
                };
                node(&ana, layout);
                shots.take(&ana, &format!("new-allocation-{}", method.to_lowercase()));
                accessible(&ana, axe, &format!("the allocation form under {method}"));
                open(&ana, &gw.url("/governance/new?kind=FreeText"));
                type_in(&ana, "#title", &format!("Which energy first ({method})?"));
                if *method != "Consent" {
                    type_in(&ana, "#options", "grid\nsolar\nwind");
                }
                submit(&ana, "#propose", "#phase");
                let question = ana.get_url().rsplit('/').next().unwrap().to_owned();
                accessible(&ana, axe, &format!("the {method} ballot form"));
                let ben = member_tab(&browser, &gw, "ben", false);
                let cleo = member_tab(&browser, &gw, "cleo", true);
                let voters = ["ana", "ben", "cleo"].into_iter().zip([&ana, &ben, &cleo]);
                for ((who, tab), ballot) in voters.zip(ballots) {
                    let (receipt, left) = cast(tab, &gw, &question, ballot);
                    assert!(receipt.contains("Your ballot is recorded"), "{method}: {receipt}");
                    if *method == "DotVoting" {
                        // With JavaScript the page counts down the points left as they
                        // are spent; without it, it shows the points a member has.
                        let expected = if who == "ben" { "10" } else { "0" };
                        assert_eq!(left, expected, "{who}");
                    }
                }
                // After the close the page shows the result.
                let deadline = std::time::Instant::now() + Duration::from_secs(period + 60);
                loop {
                    open(&ana, &gw.url(&format!("/governance/proposals/{question}")));
                    if ana.find_element("#result").is_ok() {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{method}: no result\n{}",
                        gw.log()
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
                let result = text(&ana, "main");
                for s in *shown {
                    assert!(result.contains(s), "{method}: {s:?} is not in\n{result}");
                }
                shots.take(&ana, &format!("result-{}", method.to_lowercase()));
                accessible(&ana, axe, &format!("the {method} result"));
            });
        }
    });
}

/// The scenario's co-op with these voting methods, one `(kind, method)` per kind.
fn manifests_voting(period: &str, methods: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let rules: String = methods
        .iter()
        .map(|(kind, method)| format!("    - {{kind: {kind}, method: {method}, votingPeriod: {period}}}\n"))
        .collect();
    let yaml = scenario::manifests("commons", period, "{hub: Qwen/Qwen2.5-0.5B-Instruct}");
    let start = yaml.find("    - {kind: Allocation").unwrap();
    let end = yaml.find("  memberClasses:").unwrap();
    let yaml = format!("{}{rules}{}", &yaml[..start], &yaml[end..]);
    std::fs::write(dir.path().join("coop.yaml"), yaml).expect("the manifests are written");
    dir
}

/// Posts the "new proposal" form as `cookie`; the answer's status and where it leads
/// (or the page shown again).
async fn propose(gw: &Gateway, cookie: &str, token: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let mut body = vec![("csrf", token)];
    body.extend_from_slice(fields);
    let r = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, cookie)
        .form_body(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let at = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
    (status, at.unwrap_or(r.text().await.unwrap()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_opens_through_a_form_laid_out_for_the_method_that_decides_it() {
    let ana = c::token(c::SECRET, &c::claims("ana"));
    let m = manifests_voting(
        "1h",
        &[
            ("Allocation", "RankedChoice"),
            ("Bylaw", "Supermajority"),
            ("ModelAdoption", "Approval"),
            ("MemberAdmission", "Consent"),
            ("SurplusPrice", "DotVoting"),
            ("FreeText", "Score"),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &[]);
    let (cookie, _) = session_cookie(&sign_in(&gw, &ana).await);
    let (_, html) = page(&gw, &cookie, "/governance/new?kind=Allocation").await;
    let token = csrf(&html);
    // Every kind is offered; a ranked allocation asks for options, each with its plan.
    for kind in [
        "Allocation",
        "FreeText",
        "Bylaw",
        "ModelAdoption",
        "MemberAdmission",
        "SurplusPrice",
    ] {
        assert!(
            html.contains(&format!("<option value=\"{kind}\"")),
            "{kind}: {html}"
        );
    }
    assert!(html.contains("by <strong>RankedChoice</strong>"), "{html}");
    assert!(html.contains("id=\"o3_floor-1\""), "{html}");
    assert!(!html.contains("id=\"o4_name\""), "three options at first");

    // Without JavaScript, "Add an option" shows the form again with one more option
    // and what was typed.
    let (status, again) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "Allocation"),
            ("option_count", "3"),
            ("o1_name", "Schools first"),
            ("more", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert!(
        again.contains("id=\"o4_name\"") && again.contains("value=\"Schools first\""),
        "{again}"
    );

    let (status, at) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "Allocation"),
            ("title", "Winter shares"),
            ("option_count", "4"),
            ("o1_name", "Schools first"),
            ("o1_floor:community", "60"),
            ("o1_surplus_cap", "10"),
            ("o2_name", "As sold now"),
            ("o2_floor:community", "40"),
            ("o2_surplus_cap", "30"),
            ("status_quo", "on"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{at}");
    let view = api_json(
        &gw,
        &format!("/v1/governance{}", at.trim_start_matches("/governance")),
        &ana,
    )
    .await;
    assert_eq!(view["status"]["phase"], "Open", "{view}");
    let options = &view["spec"]["options"];
    assert_eq!(
        options[0]["effect"]["allocation"]["floors"][0]["sharePercent"], 60,
        "{view}"
    );
    assert_eq!(options[2]["name"], "Keep things as they are", "{view}");
    let (_, shown) = page(&gw, &cookie, &at).await;
    assert!(
        shown.contains("sharePercent: 60"),
        "each option's change is shown: {shown}"
    );

    // A model adoption decided by approval: two candidate models.
    let (status, at) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "ModelAdoption"),
            ("title", "A second model"),
            ("o1_name", "Qwen 0.5B here"),
            ("o1_model_name", "qwen-small"),
            ("o1_model_source_kind", "hub"),
            ("o1_model_source", "Qwen/Qwen2.5-0.5B-Instruct"),
            ("o1_model_engine", "Embedded"),
            ("o1_model_access:community", "on"),
            ("o2_name", "A peer's model"),
            ("o2_model_name", "peer"),
            ("o2_model_source_kind", "none"),
            ("o2_model_engine", "External"),
            ("o2_model_url", "https://peer.example/v1"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{at}");
    let view = api_json(
        &gw,
        &format!("/v1/governance{}", at.trim_start_matches("/governance")),
        &ana,
    )
    .await;
    assert_eq!(view["status"]["phase"], "Open", "{view}");
    assert_eq!(
        view["spec"]["options"][1]["effect"]["modelAdoption"]["spec"]["engine"]["url"],
        "https://peer.example/v1",
        "{view}"
    );

    // A member admission decided by consent: one effect.
    let (status, at) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "MemberAdmission"),
            ("title", "Admit the mill"),
            ("member_name", "mill"),
            ("member_display_name", "The Mill"),
            ("member_class", "community"),
            ("member_identity", "mill"),
            ("member_organisation", "WorkerCoop"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{at}");

    // The bylaws decide surplus prices by dot voting, which cannot decide them: the page
    // says so, and the form is refused with the reason.
    let (_, html) = page(&gw, &cookie, "/governance/new?kind=SurplusPrice").await;
    assert!(html.contains("which cannot decide them"), "{html}");
    let (status, html) = propose(
        &gw,
        &cookie,
        &token,
        &[("kind", "SurplusPrice"), ("title", "Prices")],
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("change the bylaws first"), "{html}");

    // A proposal by ranked choice with a single option is refused by the service, and
    // the form comes back with what was typed.
    let (status, html) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "Allocation"),
            ("title", "Only one"),
            ("o1_name", "Lonely"),
            ("o1_floor:community", "50"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert!(
        html.contains("value=\"Lonely\"") && html.contains("role=\"alert\""),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dot_voted_allocation_opens_with_its_split_and_targets() {
    let ana = c::token(c::SECRET, &c::claims("ana"));
    let m = manifests_voting("1h", &[("Allocation", "DotVoting")]);
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &[]);
    let (cookie, _) = session_cookie(&sign_in(&gw, &ana).await);
    let (_, html) = page(&gw, &cookie, "/governance/new?kind=Allocation").await;
    assert!(
        html.contains("id=\"split\"") && html.contains("value=\"member:ben\""),
        "{html}"
    );
    let token = csrf(&html);
    let (status, at) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "Allocation"),
            ("title", "Split 30%"),
            ("floor:community", "20"),
            ("surplus_cap", "20"),
            ("split", "30"),
            ("o1_name", "Everyone"),
            ("o1_target", "class:community"),
            ("o2_name", "Ana's school"),
            ("o2_target", "member:ana"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{at}");
    let view = api_json(
        &gw,
        &format!("/v1/governance{}", at.trim_start_matches("/governance")),
        &ana,
    )
    .await;
    assert_eq!(view["status"]["phase"], "Open", "{view}");
    assert_eq!(view["spec"]["split"]["sharePercent"], 30, "{view}");
    assert_eq!(view["spec"]["options"][1]["floor"]["member"], "ana", "{view}");
    // 20% kept and 30% split is fine; 80% kept and 30% split is more than the whole.
    let (status, html) = propose(
        &gw,
        &cookie,
        &token,
        &[
            ("kind", "Allocation"),
            ("title", "Too much"),
            ("floor:community", "80"),
            ("split", "30"),
            ("o1_name", "Everyone"),
            ("o1_target", "class:community"),
            ("o2_name", "Ana's school"),
            ("o2_target", "member:ana"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{html}");
}

/// A usage record as the metering sink writes it, finished at `at` (RFC 3339, UTC).
fn record(
    caller: &str,
    kind: &str,
    at: &str,
    tokens: i64,
    cost_micro: i64,
) -> synco_gateway::db::usage_record::ActiveModel {
    c::usage_record(caller, kind, at, tokens / 2, tokens - tokens / 2, cost_micro)
}

/// Months before and after this one, `YYYY-MM`.
fn month_from_now(delta: i32) -> String {
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let first = today
        .first_of_month()
        .checked_add(jiff::Span::new().months(delta))
        .unwrap();
    format!("{:04}-{:02}", first.year(), first.month())
}

/// Past months' usage and sales, written to the database as the metering sink writes
/// them, read back by day and by month through the API and the co-op's page.
async fn usage_by_day_and_revenue_by_month(database: Option<&str>) {
    use sea_orm::EntityTrait;
    let m = manifests("1h");
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), database, &[]);
    let db = synco_gateway::db::connect(&synco_gateway::db::url(data.path(), database).unwrap())
        .await
        .unwrap();
    let (last, before, now) = (month_from_now(-1), month_from_now(-2), month_from_now(0));
    let rows = vec![
        // ana: the first second of the month, two requests on the 3rd, one on the 17th;
        // the first second of the next month is not in it.
        record("ana", "member", &format!("{last}-01T00:00:00Z"), 10, 0),
        record("ana", "member", &format!("{last}-03T09:15:00Z"), 150, 0),
        record("ana", "member", &format!("{last}-03T23:59:59Z"), 30, 0),
        record("ana", "member", &format!("{last}-17T12:00:00Z"), 200, 0),
        record("ana", "member", &format!("{now}-01T00:00:00Z"), 999, 0),
        record("ben", "member", &format!("{last}-03T10:00:00Z"), 77, 0),
        // The buyer: 12.345 EUR last month (rounded up to 12.35), 5.00 EUR before.
        record(
            "buyer",
            "customer",
            &format!("{last}-05T08:00:00Z"),
            400,
            1_000_000_000,
        ),
        record(
            "buyer",
            "customer",
            &format!("{last}-28T08:00:00Z"),
            100,
            234_500_000,
        ),
        record(
            "buyer",
            "customer",
            &format!("{before}-20T08:00:00Z"),
            300,
            500_000_000,
        ),
    ];
    synco_gateway::db::usage_record::Entity::insert_many(rows)
        .exec(&db)
        .await
        .unwrap();

    // The books: ana's usage at the rate card and a contribution, posted to last month.
    let entry = |kind: &str, amount_minor: i64, quantity: i64| synco_gateway::books::NewEntry {
        period: last.clone(),
        kind: kind.to_owned(),
        account: "ana".to_owned(),
        amount_minor,
        quantity,
        currency: "EUR".to_owned(),
        memo: String::new(),
    };
    synco_gateway::books::post(&db, &[entry("usage", 1234, 390), entry("contribution", 0, 24)])
        .await
        .unwrap();

    let ana = c::token(c::SECRET, &c::claims("ana"));
    let view = api_json(&gw, &format!("/v1/governance/coop?month={last}"), &ana).await;
    let days: Vec<(String, u64, u64)> = view["usage"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["tokens"].as_u64().unwrap(),
                d["monthToDate"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            (format!("{last}-01"), 10, 10),
            (format!("{last}-03"), 180, 190),
            (format!("{last}-17"), 200, 390)
        ],
        "{view}"
    );
    assert_eq!(view["usage"]["totalTokens"], 390, "{view}");
    let months = view["revenueByMonth"].as_array().unwrap();
    assert_eq!(months.len(), 12, "{view}");
    assert_eq!(months[11]["month"], last.as_str());
    assert_eq!(
        (
            months[11]["revenueMinor"].as_u64(),
            months[11]["tokensSold"].as_u64()
        ),
        (Some(1235), Some(500))
    );
    assert_eq!(
        (months[10]["month"].as_str(), months[10]["revenueMinor"].as_u64()),
        (Some(before.as_str()), Some(500))
    );
    assert_eq!(
        (months[9]["revenueMinor"].as_u64(), months[9]["currency"].as_str()),
        (Some(0), Some("EUR"))
    );
    let bad = reqwest::Client::new()
        .get(gw.url("/v1/governance/coop?month=2026-13"))
        .bearer_auth(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let (cookie, _) = session_cookie(&sign_in(&gw, &ana).await);
    let (status, html) = page(&gw, &cookie, &format!("/governance/coop?month={last}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("id=\"usage-chart\"") && html.contains("id=\"revenue-chart\""),
        "{html}"
    );
    for shown in [
        format!("<td>{last}-03</td><td>2</td><td>180</td><td>190</td>"),
        format!("<td>{last}</td><td>500</td><td>12.35 EUR</td>"),
        format!("<td>{before}</td><td>300</td><td>5.00 EUR</td>"),
        format!("href=\"/governance/coop?month={before}\""),
        format!("href=\"/governance/coop?month={now}\""),
        "<td>12.34 EUR for 390 tokens</td>".to_owned(),
        "<td>24 GPU-hours</td>".to_owned(),
    ] {
        assert!(html.contains(&shown), "{shown} is not in {html}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_by_day_and_revenue_by_month_sqlite() {
    usage_by_day_and_revenue_by_month(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_by_day_and_revenue_by_month_postgres() {
    let Some(pg) = common::postgres::Postgres::start() else {
        return;
    };
    usage_by_day_and_revenue_by_month(Some(&pg.url())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_propose_comment_and_vote_in_chromium_with_and_without_javascript() {
    let period = 120;
    let m = manifests(&format!("{period}s"));
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &[]);
    browser::propose_comment_and_vote(&gw, period, "standalone").await;
}
