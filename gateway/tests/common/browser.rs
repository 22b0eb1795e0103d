//! The members' pages in headless Chromium (Debian's `chromium`), driven with the
//! keyboard through the DevTools protocol, for the pages' tests in both modes.

#![expect(clippy::expect_used, reason = "tests")]

use std::path::PathBuf;
use std::time::Duration;

use headless_chrome::protocol::cdp::{DOM, Emulation, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};

use super::Gateway;
use super::coop::{self as c};

/// The scenario's co-op in namespace `ns`, with allocation proposals decided by
/// majority and free-text questions by `question_method`.
pub fn coop_yaml(ns: &str, period: &str, source: &str, question_method: &str) -> String {
    super::scenario::manifests(ns, period, source)
        .replace(
            "kind: Allocation, method: RankedChoice",
            "kind: Allocation, method: Majority",
        )
        .replace(
            "kind: FreeText, method: Approval",
            &format!("kind: FreeText, method: {question_method}"),
        )
}

/// A governance API answer, as `who` (a bearer token) reads it.
pub async fn api_json(gw: &Gateway, path: &str, who: &str) -> serde_json::Value {
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

/// A headless Chromium.
pub fn browser() -> Browser {
    Browser::new(
        LaunchOptions::default_builder()
            .path(Some(super::chromium().expect("Chromium")))
            .sandbox(false)
            .headless(true)
            .window_size(Some((1100, 1400)))
            .idle_browser_timeout(Duration::from_secs(180))
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// axe-core, installed by `.ci/run` (`npm ci` in `gateway/tests/web`).
pub fn axe_source() -> String {
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
pub fn violations(tab: &Tab, axe: &str) -> String {
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
pub fn accessible(tab: &Tab, axe: &str, page: &str) {
    assert_eq!(violations(tab, axe), "[]", "accessibility violations on {page}");
}

pub struct Shots(PathBuf);

impl Shots {
    pub fn new(mode: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("web-screenshots")
            .join(mode);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn take(&self, tab: &Tab, name: &str) {
        let png = tab
            .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("a screenshot");
        std::fs::write(self.0.join(format!("{name}.png")), png).unwrap();
    }
}

/// The element `selector` finds, or a failure that shows the page.
pub fn find<'a>(tab: &'a Tab, selector: &str) -> headless_chrome::Element<'a> {
    tab.wait_for_element(selector).unwrap_or_else(|e| {
        panic!(
            "{selector}: {e} on {}:\n{}",
            tab.get_url(),
            tab.get_content().unwrap_or_default()
        )
    })
}

pub fn open(tab: &Tab, url: &str) {
    tab.navigate_to(url).unwrap().wait_until_navigated().unwrap();
}

// The pages are driven with the keyboard, through the DevTools DOM and Input domains
// only: they work with the page's scripts off, and show that every control can be
// reached and used without a mouse.

/// The node `selector` finds, once it is there: two DevTools calls, where `find` makes
/// four (each costs about 0.1 s).
pub fn node(tab: &Tab, selector: &str) -> DOM::NodeId {
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
pub fn focus(tab: &Tab, selector: &str) {
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
pub fn submit(tab: &Tab, selector: &str, then: &str) {
    focus(tab, selector);
    tab.press_key("Enter").unwrap();
    node(tab, then);
}

/// Checks a radio button or a checkbox with the space bar.
pub fn check(tab: &Tab, selector: &str) {
    focus(tab, selector);
    tab.press_key(" ").unwrap();
}

pub fn type_in(tab: &Tab, selector: &str, text: &str) {
    focus(tab, selector);
    // Inserted in one go (typing key by key costs a round trip per character).
    tab.send_character(text).unwrap();
}

/// An element's HTML (read without running a script in the page).
pub fn html(tab: &Tab, selector: &str) -> String {
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
pub fn replace(tab: &Tab, selector: &str, text: &str) {
    focus(tab, selector);
    tab.press_key("End").unwrap();
    for _ in 0..4 {
        tab.press_key("Backspace").unwrap();
    }
    tab.send_character(text).unwrap();
}

/// Picks the `index`th option of a select with the keyboard.
pub fn choose(tab: &Tab, selector: &str, index: usize) {
    focus(tab, selector);
    for _ in 0..index {
        tab.press_key("ArrowDown").unwrap();
    }
}

pub fn text(tab: &Tab, selector: &str) -> String {
    find(tab, selector).get_inner_text().unwrap()
}

/// A signed-in tab for `who`, with or without JavaScript, in a browser context of its
/// own (its own cookies, as another person's browser).
pub fn member_tab(browser: &Browser, gw: &Gateway, who: &str, javascript: bool) -> std::sync::Arc<Tab> {
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
pub fn vote(
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

/// The members' whole flow in Chromium, against a gateway in either mode whose co-op
/// is [`coop_yaml`]'s with free-text questions by ranked choice and voting periods of
/// `period` seconds: ana (JavaScript on) signs in, opens an allocation proposal and a
/// ranked-choice question, comments; ben (JavaScript off), cleo and ana vote (dan
/// delegates to ben); ben proposes a bylaw change; after the close ana reads both
/// results (the rounds chart and table, the fingerprint) and the new allocation in the
/// co-op's chart. Every page is checked with axe-core and saved as a screenshot under
/// `$CARGO_TARGET_TMPDIR/web-screenshots/<mode>/`.
pub async fn propose_comment_and_vote(gw: &Gateway, period: u64, mode: &str) {
    let shots = Shots::new(mode);
    let axe = axe_source();
    let browser = browser();

    // The sign-in page.
    let visitor = browser.new_context().unwrap().new_tab().unwrap();
    open(&visitor, &gw.url("/governance"));
    shots.take(&visitor, "sign-in");
    accessible(&visitor, &axe, "sign-in");

    // ana, with JavaScript: signs in, opens an allocation proposal and a question.
    let ana = member_tab(&browser, gw, "ana", true);
    shots.take(&ana, "proposals-empty");
    accessible(&ana, &axe, "proposals-empty");
    for kind in ["FreeText", "ModelAdoption", "MemberAdmission", "SurplusPrice"] {
        open(&ana, &gw.url(&format!("/governance/new?kind={kind}")));
        accessible(&ana, &axe, &format!("the {kind} form"));
    }
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
    let receipt = vote(&ana, gw, &allocation, &question, "Yes", &[2, 1]);
    assert!(receipt.contains("Your ballot is recorded"), "{receipt}");
    shots.take(&ana, "proposal-receipt");
    accessible(&ana, &axe, "proposal-receipt");
    let ben = member_tab(&browser, gw, "ben", false);
    open(&ben, &gw.url(&format!("/governance/proposals/{allocation}")));
    shots.take(&ben, "proposal-open-no-javascript");
    vote(&ben, gw, &allocation, &question, "Yes", &[1, 2]);
    let cleo = member_tab(&browser, gw, "cleo", true);
    vote(&cleo, gw, &allocation, &question, "No", &[3, 1]);
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
        let (gw, token) = (gw, &token);
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
