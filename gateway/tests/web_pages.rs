//! The members' web pages in standalone mode: the real binary and SQLite.
//!
//! - Over HTTP: sign-in sets an HttpOnly, SameSite=Strict cookie; a forged CSRF token, a
//!   POST from another origin, an expired or ended session and a customer are refused;
//!   a title of `<script>` is shown as text.
//! - In headless Chromium (Debian's `chromium`): ana signs in with JavaScript on, opens
//!   an allocation proposal and a ranked-choice question through the forms, comments and
//!   votes; ben votes with JavaScript off (radio buttons and a choice per rank); cleo
//!   too. After the close ana reads both results (the rounds chart and table, the
//!   fingerprint) and sees the new allocation in the co-op's chart. Every page is saved
//!   as a screenshot under `$CARGO_TARGET_TMPDIR/web-screenshots/`.

#![expect(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::coop::{self as c};
use common::{Gateway, scenario};
use headless_chrome::protocol::cdp::{DOM, Emulation, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};
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
    let yaml = scenario::manifests("commons", period, "{hub: Qwen/Qwen2.5-0.5B-Instruct}")
        .replace(
            "kind: Allocation, method: RankedChoice",
            "kind: Allocation, method: Majority",
        )
        .replace(
            "kind: FreeText, method: Approval",
            &format!("kind: FreeText, method: {question_method}"),
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

/// A governance API answer, as `who` (a bearer token) reads it.
async fn api_json(gw: &Gateway, path: &str, who: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(gw.url(path))
        .bearer_auth(who)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
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
    let shots = Shots::new();
    // The four co-ops vote side by side, each in a browser of its own (a DevTools call
    // costs about 0.1 s, so a ballot costs seconds; one after another they take minutes).
    std::thread::scope(|scope| {
        for (method, ballots, shown) in &cases {
            let shots = &shots;
            scope.spawn(move || {
                let m = manifests_with(&format!("{period}s"), method);
                let data = tempfile::tempdir().unwrap();
                let gw = c::standalone(m.path(), data.path(), None, &[]);
                let browser = browser();
                let ana = member_tab(&browser, &gw, "ana", true);
                open(&ana, &gw.url("/governance/new?kind=FreeText"));
                type_in(&ana, "#title", &format!("Which energy first ({method})?"));
                if *method != "Consent" {
                    type_in(&ana, "#options", "grid\nsolar\nwind");
                }
                submit(&ana, "#propose", "#phase");
                let question = ana.get_url().rsplit('/').next().unwrap().to_owned();
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
            });
        }
    });
}

/// A headless Chromium.
fn browser() -> Browser {
    Browser::new(
        LaunchOptions::default_builder()
            .path(Some(common::chromium().expect("Chromium")))
            .sandbox(false)
            .headless(true)
            .window_size(Some((1100, 1400)))
            .idle_browser_timeout(Duration::from_secs(180))
            .build()
            .unwrap(),
    )
    .unwrap()
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
    use sea_orm::ActiveValue::{NotSet, Set};
    synco_gateway::db::usage_record::ActiveModel {
        id: NotSet,
        request_id: Set(format!("req-{caller}-{at}")),
        caller: Set(caller.to_owned()),
        caller_kind: Set(kind.to_owned()),
        model: Set("tiny".to_owned()),
        endpoint: Set("chat_completions".to_owned()),
        prompt_tokens: Set(tokens / 2),
        completion_tokens: Set(tokens - tokens / 2),
        latency_ms: Set(12),
        outcome: Set("completed".to_owned()),
        finished_at: Set(at.to_owned()),
        record_id: Set(Some(format!("rec-{caller}-{at}"))),
        cost_micro: Set(cost_micro),
        currency: Set(if kind == "customer" { "EUR" } else { "" }.to_owned()),
    }
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

/// axe-core, installed by `.ci/run` (`npm ci` in `gateway/tests/web`).
fn axe_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; install it with `npm ci` in gateway/tests/web (.ci/run does)",
            path.display()
        )
    })
}

/// The serious and critical accessibility violations axe-core finds on the page in
/// `tab`, as JSON.
fn violations(tab: &Tab, axe: &str) -> String {
    tab.evaluate(axe, false).expect("axe-core loads");
    tab.evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations\
               .filter(v => v.impact === 'serious' || v.impact === 'critical')\
               .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))))",
        true,
    )
    .expect("axe-core runs")
    .value
    .and_then(|v| v.as_str().map(str::to_owned))
    .expect("axe-core answers")
}

/// Fails on any serious or critical accessibility violation on the page in `tab`.
fn accessible(tab: &Tab, axe: &str, page: &str) {
    assert_eq!(violations(tab, axe), "[]", "accessibility violations on {page}");
}

struct Shots(PathBuf);

impl Shots {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn take(&self, tab: &Tab, name: &str) {
        let png = tab
            .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("a screenshot");
        std::fs::write(self.0.join(format!("{name}.png")), png).unwrap();
    }
}

/// The element `selector` finds, or a failure that shows the page.
fn find<'a>(tab: &'a Tab, selector: &str) -> headless_chrome::Element<'a> {
    tab.wait_for_element(selector).unwrap_or_else(|e| {
        panic!(
            "{selector}: {e} on {}:\n{}",
            tab.get_url(),
            tab.get_content().unwrap_or_default()
        )
    })
}

fn open(tab: &Tab, url: &str) {
    tab.navigate_to(url).unwrap().wait_until_navigated().unwrap();
}

// The pages are driven with the keyboard, through the DevTools DOM and Input domains
// only: they work with the page's scripts off, and show that every control can be
// reached and used without a mouse.

/// The node `selector` finds, once it is there: two DevTools calls, where `find` makes
/// four (each costs about 0.1 s).
fn node(tab: &Tab, selector: &str) -> DOM::NodeId {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let root = tab.get_document().unwrap().node_id;
        let found = tab.call_method(DOM::QuerySelector {
            node_id: root,
            selector: selector.to_owned(),
        });
        match found {
            Ok(r) if r.node_id != 0 => return r.node_id,
            _ if std::time::Instant::now() > deadline => {
                find(tab, selector);
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Moves the keyboard focus to `selector`.
fn focus(tab: &Tab, selector: &str) {
    let node = node(tab, selector);
    tab.call_method(DOM::Focus {
        node_id: Some(node),
        backend_node_id: None,
        object_id: None,
    })
    .unwrap();
}

/// Presses a submit button with Enter and waits for the next page, which has `then`
/// (and the page before did not).
fn submit(tab: &Tab, selector: &str, then: &str) {
    focus(tab, selector);
    tab.press_key("Enter").unwrap();
    node(tab, then);
}

/// Checks a radio button or a checkbox with the space bar.
fn check(tab: &Tab, selector: &str) {
    focus(tab, selector);
    tab.press_key(" ").unwrap();
}

fn type_in(tab: &Tab, selector: &str, text: &str) {
    focus(tab, selector);
    // Inserted in one go (typing key by key costs a round trip per character).
    tab.send_character(text).unwrap();
}

/// An element's HTML (read without running a script in the page).
fn html(tab: &Tab, selector: &str) -> String {
    let node = node(tab, selector);
    tab.call_method(DOM::GetOuterHTML {
        node_id: Some(node),
        backend_node_id: None,
        object_id: None,
        include_shadow_dom: None,
    })
    .unwrap()
    .outer_html
}

/// Replaces a short field's text, as a member would: to its end, erase, type.
fn replace(tab: &Tab, selector: &str, text: &str) {
    focus(tab, selector);
    tab.press_key("End").unwrap();
    for _ in 0..4 {
        tab.press_key("Backspace").unwrap();
    }
    tab.send_character(text).unwrap();
}

/// Picks the `index`th option of a select with the keyboard.
fn choose(tab: &Tab, selector: &str, index: usize) {
    focus(tab, selector);
    for _ in 0..index {
        tab.press_key("ArrowDown").unwrap();
    }
}

fn text(tab: &Tab, selector: &str) -> String {
    find(tab, selector).get_inner_text().unwrap()
}

/// A signed-in tab for `who`, with or without JavaScript, in a browser context of its
/// own (its own cookies, as another person's browser).
fn member_tab(browser: &Browser, gw: &Gateway, who: &str, javascript: bool) -> std::sync::Arc<Tab> {
    let tab = browser.new_context().unwrap().new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(20));
    if !javascript {
        tab.call_method(Emulation::SetScriptExecutionDisabled { value: true })
            .unwrap();
    }
    open(&tab, &gw.url("/governance"));
    type_in(&tab, "#key", &c::token(c::SECRET, &c::claims(who)));
    submit(&tab, "#sign-in", "#member");
    assert!(html(&tab, "#member").contains(&format!(">{who}<")));
    tab
}

/// Votes on the two proposals: a position on the allocation, a ranking on the question.
fn vote(
    tab: &Tab,
    gw: &Gateway,
    allocation: &str,
    question: &str,
    position: &str,
    ranks: &[usize],
) -> String {
    open(tab, &gw.url(&format!("/governance/proposals/{allocation}")));
    check(tab, &format!("input[name=position][value={position}]"));
    submit(tab, "#cast", "#receipt");
    let receipt = html(tab, "#receipt");
    open(tab, &gw.url(&format!("/governance/proposals/{question}")));
    for (i, option) in ranks.iter().enumerate() {
        choose(tab, &format!("#rank{}", i + 1), *option);
    }
    submit(tab, "#cast", "#receipt");
    assert!(html(tab, "#receipt").contains("Your ballot is recorded"));
    receipt
}

#[tokio::test(flavor = "multi_thread")]
async fn members_propose_comment_and_vote_in_chromium_with_and_without_javascript() {
    let period = 120;
    let m = manifests(&format!("{period}s"));
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &[]);
    let shots = Shots::new();
    let axe = axe_source();
    let browser = browser();

    // The sign-in page.
    let visitor = browser.new_context().unwrap().new_tab().unwrap();
    open(&visitor, &gw.url("/governance"));
    shots.take(&visitor, "sign-in");
    accessible(&visitor, &axe, "sign-in");

    // ana, with JavaScript: signs in, opens an allocation proposal and a question.
    let ana = member_tab(&browser, &gw, "ana", true);
    shots.take(&ana, "proposals-empty");
    accessible(&ana, &axe, "proposals-empty");
    open(&ana, &gw.url("/governance/new?kind=Allocation"));
    type_in(&ana, "#title", "Schools first this winter");
    type_in(
        &ana,
        "#body",
        "Raise the community floor to 60% and sell at most 20%.",
    );
    replace(&ana, "#floor-1", "60");
    replace(&ana, "#surplus_cap", "20");
    // The script keeps the total; without it the server's figure stays.
    assert_eq!(text(&ana, "#share-total"), "80");
    shots.take(&ana, "new-allocation");
    accessible(&ana, &axe, "new-allocation");
    submit(&ana, "#propose", "#phase");
    let allocation = ana.get_url().rsplit('/').next().unwrap().to_owned();
    assert_eq!(text(&ana, "#phase"), "Open", "{allocation}");

    open(&ana, &gw.url("/governance/new?kind=FreeText"));
    type_in(&ana, "#title", "Which energy first?");
    type_in(&ana, "#options", "grid\nsolar\nwind");
    submit(&ana, "#propose", "#phase");
    let question = ana.get_url().rsplit('/').next().unwrap().to_owned();

    // A comment and a reply.
    open(&ana, &gw.url(&format!("/governance/proposals/{allocation}")));
    type_in(&ana, "#comment-body", "Schools lost hours last winter.");
    submit(&ana, "#comment", "#discussion ~ article");
    assert!(ana.get_url().contains("#comment-"), "{}", ana.get_url());
    assert!(text(&ana, "#discussion ~ article").contains("Schools lost hours"));

    // Votes: ana Yes and solar > grid; ben (no JavaScript) Yes and grid > solar; cleo
    // No and wind > grid. dan delegates to ben (in the manifests).
    let receipt = vote(&ana, &gw, &allocation, &question, "Yes", &[2, 1]);
    assert!(receipt.contains("Your ballot is recorded"), "{receipt}");
    shots.take(&ana, "proposal-receipt");
    accessible(&ana, &axe, "proposal-receipt");
    let ben = member_tab(&browser, &gw, "ben", false);
    open(&ben, &gw.url(&format!("/governance/proposals/{allocation}")));
    shots.take(&ben, "proposal-open-no-javascript");
    vote(&ben, &gw, &allocation, &question, "Yes", &[1, 2]);
    let cleo = member_tab(&browser, &gw, "cleo", true);
    vote(&cleo, &gw, &allocation, &question, "No", &[3, 1]);
    // A second ballot through the page is refused, and says why.
    open(&cleo, &gw.url(&format!("/governance/proposals/{allocation}")));
    assert!(cleo.find_element("#cast").is_ok());
    check(&cleo, "input[name=position][value=Yes]");
    submit(&cleo, "#cast", "#message");
    assert!(
        html(&cleo, "#message").contains("already voted"),
        "{}",
        html(&cleo, "#message")
    );

    open(&ana, &gw.url("/governance"));
    shots.take(&ana, "proposals-open");
    accessible(&ana, &axe, "proposals-open");

    // ben, without JavaScript, proposes a bylaw change: questions decided by approval
    // instead of ranked choice. The form shows the bylaws in force; he changes one field.
    open(&ben, &gw.url("/governance/new?kind=Bylaw"));
    type_in(&ben, "#title", "Approve, don't rank");
    focus(&ben, "#rule-FreeText-method");
    for _ in 0..2 {
        // RankedChoice, Score, Approval.
        ben.press_key("ArrowUp").unwrap();
    }
    shots.take(&ben, "new-bylaw");
    // (axe-core is a script: it runs in ana's tab, on the same form.)
    open(&ana, &gw.url("/governance/new?kind=Bylaw"));
    accessible(&ana, &axe, "new-bylaw");
    submit(&ben, "#propose", "#phase");
    // (The change is in a closed <details>, which innerText leaves out.)
    let change = html(&ben, "main");
    assert!(
        change.contains("Bylaw proposal by <strong>ben</strong>")
            && change.contains("- kind: FreeText\n    method: Approval"),
        "{change}"
    );
    assert!(
        !change.contains("memberClasses"),
        "only the voting rules change: {change}"
    );

    // After the close: the results and the new allocation.
    let token = c::token(c::SECRET, &c::claims("ana"));
    let phase = |name: String| {
        let (gw, token) = (&gw, &token);
        async move {
            let v = api_json(gw, &format!("/v1/governance/proposals/{name}"), token).await;
            v["status"]["phase"].as_str().unwrap_or_default().to_owned()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(period + 60);
    // A question without an effect is Applied as soon as it passes, like any other.
    while !(phase(allocation.clone()).await == "Applied" && phase(question.clone()).await == "Applied") {
        assert!(
            std::time::Instant::now() < deadline,
            "the proposals did not close:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    open(&ana, &gw.url(&format!("/governance/proposals/{allocation}")));
    assert_eq!(text(&ana, "#phase"), "Applied");
    // ana, ben and dan (by delegation to ben) for; cleo against.
    let counts = text(&ana, "#counts");
    assert!(counts.contains("Yes\t3") && counts.contains("No\t1"), "{counts}");
    assert_eq!(text(&ana, "#fingerprint").len(), 64);
    assert!(
        ana.find_element("#cast").is_err(),
        "no ballot form after the close"
    );
    shots.take(&ana, "result-allocation");
    accessible(&ana, &axe, "result-allocation");

    // 4 ballots' weight (dan's by delegation to ben): grid 2, solar 1, wind 1; one of
    // the last two goes out by the published lot, its ballot moves to grid: grid 3 of 4.
    open(&ana, &gw.url(&format!("/governance/proposals/{question}")));
    assert!(
        text(&ana, "#outcome").contains("grid won"),
        "{}",
        text(&ana, "#outcome")
    );
    let svg = ana.wait_for_element("#rounds-chart svg").unwrap();
    assert!(svg.get_content().unwrap().contains("Round 2"));
    assert_eq!(
        ana.wait_for_element("#rounds tbody")
            .unwrap()
            .find_elements("tr")
            .unwrap()
            .len(),
        2
    );
    shots.take(&ana, "result-rounds");
    accessible(&ana, &axe, "result-rounds");

    open(&ana, &gw.url("/governance/coop"));
    let shares = text(&ana, "#shares");
    assert!(
        shares.contains("class community") && shares.contains("60%"),
        "{shares}"
    );
    assert!(shares.contains("20%"), "{shares}");
    assert!(ana.wait_for_element("#allocation-chart svg").is_ok());
    shots.take(&ana, "coop");
    accessible(&ana, &axe, "coop");

    // On a 375 px phone the pages fit the screen's width.
    ana.call_method(Emulation::SetDeviceMetricsOverride {
        width: 375,
        height: 812,
        device_scale_factor: 2.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
    for path in [
        "/governance".to_owned(),
        format!("/governance/proposals/{question}"),
        "/governance/coop".to_owned(),
    ] {
        open(&ana, &gw.url(&path));
        let wide = ana
            .evaluate("document.documentElement.scrollWidth <= window.innerWidth", false)
            .unwrap()
            .value
            .and_then(|v| v.as_bool());
        assert_eq!(wide, Some(true), "{path} is wider than a 375 px screen");
    }
    shots.take(&ana, "phone-coop");

    open(&ana, &gw.url("/governance/delegation"));
    shots.take(&ana, "delegation");
    accessible(&ana, &axe, "delegation");
    // The check can fail: a field without a label is a critical violation.
    ana.evaluate(
        "document.querySelector('main').appendChild(document.createElement('input'))",
        false,
    )
    .unwrap();
    assert!(
        violations(&ana, &axe).contains("\"label\""),
        "axe-core finds an unlabelled field"
    );
}
