package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// chromiumPath is Debian's Chromium (apt-get install chromium), which scripts/test installs.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium with a fresh profile and returns a tab's context; it
// skips the test when Chromium is missing (fails it where peers are required).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		peers.Missing(t, "%s (apt-get install chromium): %v", chromiumPath, err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	return ctx
}

// openPage opens serve's web page in the browser as a person does. This is the one place a
// login step belongs once the API needs a session.
func openPage(t *testing.T, ctx context.Context, s *hubServe) {
	t.Helper()
	// The login URL serve prints sets the session cookie and redirects to the page.
	login := s.info.HTTP + "/login?token=" + url.QueryEscape(s.token(t))
	if err := chromedp.Do(ctx, chromedp.Navigate(login), chromedp.WaitVisible(chromedp.ID("deploy"))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
}

// waitPage waits until the JavaScript expression is true on the page (which refreshes itself).
func waitPage(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, body)
	}
}

// message waits for the page's status line to say something containing want.
func message(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	waitPage(t, ctx, "the message "+want, fmt.Sprintf(`!document.getElementById('msg').hidden && document.getElementById('msg').textContent.includes(%q)`, want))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("msg")))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// The page in a real browser: a person deploys from it, sees the device install and reboot
// into the update, fail, retries and cancels with its buttons, and reads errors the API gave;
// ids do not wrap and times carry their zone.
func TestPageInBrowser(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	s := startServe(t, filepath.Join(dir, "hub"))
	const devID = "toaster-0123456789abcdef-kitchen"
	var added deviceAdded
	s.mustCLI(t, &added, "device", "add", "--json", devID)
	m1, img1 := signedUpdate(t, dir, "1.0")
	s.mustCLI(t, nil, "import", "--manifest", m1, img1)
	c := dialDevice(t, s, added.ConnectionString, added.CAFile)
	iothubtest.NextDesired(t, c)
	old := adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "0.9"}.InstalledUpdateID()
	// Many properties, to take the width the ids need.
	reportAgent(t, c, `{"deviceProperties":{"manufacturer":"contoso","model":"toaster","ring":"a","hwrev":"2","site":"kitchen-north-wing",`+
		`"serial":"SN-000123456789","board":"imx8mm-evk-rev-c","contractModelId":"dtmi:azure:iot:deviceUpdateContractModel;2"},`+
		`"compatPropertyNames":"manufacturer,model","state":0,"installedUpdateId":`+quoteJSON(old)+`}`)

	openPage(t, ctx, s)
	waitPage(t, ctx, "the device", fmt.Sprintf(`document.getElementById('devices').innerText.includes(%q)`, devID))

	// Errors of the form and of the API are shown.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`#deploy input[name=group]`), "ring")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#deploy button`)
	message(t, ctx, `group: "ring": want k=v`)
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`#deploy input[name=group]`), "ring=zzz")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#deploy button`)
	message(t, ctx, "no registered device matches")

	// Deploy 1.0 to ring a from the page.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`#deploy input[name=group]`), "ring=a")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#deploy button`)
	got := message(t, ctx, "Contoso/Toaster/1.0 to 1 device(s): "+devID)
	var all []hub.DeploymentStatus
	s.mustCLI(t, &all, "status", "--json")
	if len(all) != 1 || all[0].Group["ring"] != "a" || !strings.Contains(got, all[0].ID) {
		t.Fatalf("after deploying from the page (%q): %+v", got, all)
	}
	dep := all[0]
	iothubtest.NextDesired(t, c)

	// The device starts it, reports bank B pending (as aduagent does before its reboot), then
	// leaves to boot the update (an agent's DISCONNECT).
	reportAgent(t, c, `{"state":6,"workflow":{"action":3,"id":"`+dep.ID+`"}}`)
	waitPage(t, ctx, "installing", `document.getElementById('devices').innerText.includes('installing Contoso/Toaster/1.0')`)
	if _, err := c.UpdateReported(context.Background(), json.RawMessage(`{"aduflashBanks":{"running":"A","primary":"B","pending":"B","attemptsLeft":3,"fallback":"A"}}`)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitPage(t, ctx, "rebooting", `document.getElementById('devices').innerText.includes('rebooting into bank B (Contoso/Toaster/1.0)')`)
	checkLayout(t, ctx, devID, dep.ID)
	screenshot(t, ctx, "rebooting")

	// Back up on the old bank: failed. Retry from the page.
	c = dialDevice(t, s, added.ConnectionString, added.CAFile)
	iothubtest.NextDesired(t, c)
	reportAgent(t, c, `{"state":255,"workflow":{"action":3,"id":"`+dep.ID+`"},"lastInstallResult":{"resultCode":0,"extendedResultCodes":"32000020","resultDetails":"health check failed"}}`)
	waitPage(t, ctx, "the retry button", `document.querySelector('button[data-action=retry]') !== null`)
	click(t, ctx, `button[data-action=retry]`)
	message(t, ctx, "retrying 1 device(s): "+devID)
	des, err := adu.ParseDesired(iothubtest.NextDesired(t, c).Patch)
	if err != nil || des.Service == nil || des.Service.Workflow.ID != dep.ID || des.Service.Workflow.RetryTimestamp == "" {
		t.Fatalf("retry from the page: %+v %v", des, err)
	}

	// Cancel asks for a second click.
	click(t, ctx, `button[data-action=cancel]`)
	waitPage(t, ctx, "the confirmation", `document.querySelector('button[data-action=cancel]').textContent.includes('Click again')`)
	if st := status(t, s, dep.ID); st.Cancelled {
		t.Fatal("cancelled on the first click")
	}
	click(t, ctx, `button[data-action=cancel]`)
	message(t, ctx, "deployment "+dep.ID+" cancelled: 0 succeeded, 0 failed, 0 in progress, 1 cancelled")
	if st := status(t, s, dep.ID); !st.Cancelled {
		t.Fatal("not cancelled")
	}
	waitPage(t, ctx, "the cancelled deployment", `document.getElementById('deployments').innerText.includes('(cancelled)')`)
	screenshot(t, ctx, "cancelled")
}

func status(t *testing.T, s *hubServe, id string) hub.DeploymentStatus {
	t.Helper()
	var st hub.DeploymentStatus
	s.mustCLI(t, &st, "status", "--json", id)
	return st
}

// checkLayout checks the page's DOM: the device and the deployment with its state, ids on one
// line each, every time with its zone.
func checkLayout(t *testing.T, ctx context.Context, devID, depID string) {
	t.Helper()
	type layout struct {
		Rows      []string // the deployments' result rows
		IDs       []string // text of the id cells
		Wrapped   []string // id cells whose text takes more than one line
		Times     []string // text of every <time>
		Connected string   // the device's connected cell
	}
	l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](`(() => {
		const lines = el => { const r = document.createRange(); r.selectNodeContents(el); return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; };
		const ids = [...document.querySelectorAll('td.id, h3 .id')];
		return {
			Rows: [...document.querySelectorAll('#deployments tr')].slice(1).map(tr => tr.innerText),
			IDs: ids.map(e => e.innerText),
			Wrapped: ids.filter(e => lines(e) > 1).map(e => e.innerText),
			Times: [...document.querySelectorAll('time')].map(e => e.innerText),
			Connected: document.querySelector('#devices tr:nth-child(2) td:nth-child(2)').innerText,
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Rows) != 1 || !strings.Contains(l.Rows[0], devID) || !strings.Contains(l.Rows[0], "InProgress") {
		t.Errorf("deployment rows %q", l.Rows)
	}
	if !strings.Contains(strings.Join(l.IDs, " "), devID) || !strings.Contains(strings.Join(l.IDs, " "), depID) {
		t.Errorf("id cells %q lack %s or %s", l.IDs, devID, depID)
	}
	if len(l.Wrapped) > 0 {
		t.Errorf("ids wrap: %q", l.Wrapped)
	}
	zoned := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z+-][A-Za-z0-9+-]*$`)
	if len(l.Times) < 4 {
		t.Errorf("times %q", l.Times)
	}
	for _, tm := range l.Times {
		if !zoned.MatchString(tm) {
			t.Errorf("time %q has no zone", tm)
		}
	}
	if !strings.HasPrefix(l.Connected, "no") || !strings.Contains(l.Connected, "rebooting into bank B (Contoso/Toaster/1.0)") {
		t.Errorf("connected cell %q", l.Connected)
	}
}

// screenshot saves the page as PNG in the test's folder, or in $ADUHUB_SCREENSHOTS when set
// (to look at it).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("ADUHUB_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "page-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
