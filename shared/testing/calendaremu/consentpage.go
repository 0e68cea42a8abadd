package calendaremu

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
)

// The consent page and the authorization error page. Plain HTML forms:
// they work without JavaScript, every input has a label, and native
// controls keep them keyboard usable (Allow is the form's first button,
// so Enter allows). Under Google's granular consent ("How to handle
// granular permissions", developers.google.com/identity/protocols/oauth2/
// resources/granular-permissions) the sign-in scopes (openid, email,
// profile) are not optional; every other scope has a box the user may
// untick. The emulator ticks them by default, except those UntickScopes names.

const otherAccount = "other"

// signInScope says whether granular consent leaves sc out of the choice.
func signInScope(sc string) bool {
	switch sc {
	case "openid", "email", "profile",
		"https://www.googleapis.com/auth/userinfo.email", "https://www.googleapis.com/auth/userinfo.profile":
		return true
	}
	return false
}

// scopeText is how the consent page words a scope (Google's wording for
// the ones calsync asks for); others show their URL only.
var scopeText = map[string]string{
	"openid":  "Associate you with your personal info on Google",
	"email":   "See your primary Google Account email address",
	"profile": "See your personal info, including any personal info you've made publicly available",
	"https://www.googleapis.com/auth/userinfo.email":                 "See your primary Google Account email address",
	"https://www.googleapis.com/auth/userinfo.profile":               "See your personal info, including any personal info you've made publicly available",
	"https://www.googleapis.com/auth/calendar":                       "See, edit, share, and permanently delete all the calendars you can access using Google Calendar",
	"https://www.googleapis.com/auth/calendar.readonly":              "See and download any calendar you can access using your Google Calendar",
	"https://www.googleapis.com/auth/calendar.events":                "View and edit events on all your calendars",
	"https://www.googleapis.com/auth/calendar.events.readonly":       "View events on all your calendars",
	"https://www.googleapis.com/auth/calendar.calendarlist.readonly": "See the list of Google calendars you're subscribed to",
}

type consentView struct {
	Request, App, Client string
	Accounts             []choice
	OtherChecked         bool
	OtherEmail           string
	Scopes, SignIn       []choice
	AnyScope             bool
	Error                string
}

// choice is an account or a scope on the page.
type choice struct {
	ID, Value, Text string
	Checked         bool
}

// consentViewLocked builds the page for a pending request; form, when
// not nil, is the user's earlier answer to show again with an error.
func (s *Server) consentViewLocked(id string, req authRequest, form url.Values) consentView {
	v := consentView{Request: id, App: s.clientNameLocked(req.client), Client: req.client, AnyScope: req.any}
	chosen := req.loginHint
	if form != nil {
		chosen = form.Get("account")
		v.OtherEmail = form.Get("other_email")
	}
	emails := make([]string, 0, len(s.users))
	for e, u := range s.users {
		if !u.suspended && !u.deleted {
			emails = append(emails, e)
		}
	}
	sort.Strings(emails)
	for i, e := range emails {
		v.Accounts = append(v.Accounts, choice{ID: "account-" + strconv.Itoa(i), Value: e, Text: e, Checked: e == chosen})
	}
	if chosen != "" && !slices.Contains(emails, chosen) {
		v.OtherChecked = true
		if form == nil {
			v.OtherEmail = chosen // a login_hint the emulator does not know yet
		}
	}
	for i, sc := range req.scopes {
		c := choice{ID: "scope-" + strconv.Itoa(i), Value: sc, Text: scopeText[sc]}
		if signInScope(sc) {
			v.SignIn = append(v.SignIn, c)
			continue
		}
		if form != nil {
			c.Checked = slices.Contains(form["scope"], sc)
		} else {
			c.Checked = !s.project.untick[sc]
		}
		v.Scopes = append(v.Scopes, c)
	}
	return v
}

const pageStyle = `body{font-family:Roboto,Arial,sans-serif;color:#202124;background:#fff;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
fieldset{border:1px solid #dadce0;border-radius:8px;margin:1rem 0;padding:.5rem 1rem}legend{font-weight:bold;padding:0 .25rem}
.opt{margin:.5rem 0}.scope{display:block;color:#5f6368;font-size:.85rem;word-break:break-all}
button{font-size:1rem;padding:.5rem 1.5rem;border-radius:4px;margin-right:.5rem;cursor:pointer}
#allow{background:#1a73e8;color:#fff;border:1px solid #1a73e8}#cancel{background:#fff;color:#1a73e8;border:1px solid #dadce0}
:focus-visible{outline:3px solid #174ea6;outline-offset:2px}.error{color:#b3261e;border-left:4px solid #b3261e;padding-left:.5rem}`

var consentTmpl = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - Google Accounts (emulator)</title><style>` + pageStyle + `</style></head>
<body><main>
<h1 id="title">{{.App}} wants to access your Google Account</h1>
<p>OAuth client <code id="client">{{.Client}}</code></p>
{{if .Error}}<p class="error" id="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="">
<input type="hidden" name="request" value="{{.Request}}">
<fieldset id="accounts"><legend>Choose an account</legend>
{{range .Accounts}}<div class="opt"><input type="radio" name="account" id="{{.ID}}" value="{{.Value}}"{{if .Checked}} checked{{end}}> <label for="{{.ID}}">{{.Text}}</label></div>
{{end}}<div class="opt"><input type="radio" name="account" id="account-other" value="other"{{if .OtherChecked}} checked{{end}}> <label for="account-other">Use another account</label></div>
<div class="opt"><label for="other-email">Email</label> <input type="email" name="other_email" id="other-email" value="{{.OtherEmail}}" autocomplete="email"></div>
</fieldset>
<fieldset id="scopes"><legend>Select what {{.App}} can access</legend>
{{range .SignIn}}<div class="opt" id="{{.ID}}">{{if .Text}}{{.Text}}{{else}}{{.Value}}{{end}} <span class="scope">{{.Value}} (always shared when you sign in)</span></div>
{{end}}{{range .Scopes}}<div class="opt"><input type="checkbox" name="scope" id="{{.ID}}" value="{{.Value}}"{{if .Checked}} checked{{end}}> <label for="{{.ID}}">{{if .Text}}{{.Text}}{{else}}{{.Value}}{{end}} <span class="scope">{{.Value}}</span></label></div>
{{end}}{{if .AnyScope}}<p>No scope was requested: full access to your calendars (emulator only).</p>{{end}}
</fieldset>
<p>Make sure you trust {{.App}}. You can remove its access at any time in your Google Account.</p>
<button type="submit" name="action" value="allow" id="allow">Allow</button>
<button type="submit" name="action" value="cancel" id="cancel">Cancel</button>
</form></main></body></html>`))

var authErrorTmpl = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Error 400: {{.Code}}</title><style>` + pageStyle + `</style></head>
<body><main>
<h1>Access blocked: this app's request is invalid</h1>
<p class="error" id="error" role="alert">Error 400: <span id="error-code">{{.Code}}</span></p>
<p id="error-description">{{.Desc}}</p>
{{if .Client}}<p>Request details: client_id={{.Client}}{{if .Redirect}} redirect_uri={{.Redirect}}{{end}}</p>{{end}}
</main></body></html>`))

func renderConsent(w http.ResponseWriter, status int, v consentView) {
	renderHTML(w, status, consentTmpl, v)
}

// renderAuthError is Google's answer to a request it cannot trust: a page
// for the user, never a redirect.
func renderAuthError(w http.ResponseWriter, e *authError, req authRequest) {
	renderHTML(w, http.StatusBadRequest, authErrorTmpl, map[string]string{"Code": e.code, "Desc": e.desc, "Client": req.client, "Redirect": req.redirect})
}

func renderHTML(w http.ResponseWriter, status int, t *template.Template, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY") // Google's pages refuse framing (clickjacking)
	w.WriteHeader(status)
	_ = t.Execute(w, data)
}
