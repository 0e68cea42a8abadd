package connect

import (
	"html/template"
	"net/http"
)

// The pages work without JavaScript (a form posts to /start), label what
// they ask, keep a 4.5:1 contrast and are usable from the keyboard (native
// controls, a visible focus outline).

type pageConnect struct {
	Product string
	Link    string
}

type pageDisconnect struct {
	Product string
	Link    string
}

type pageError struct {
	Title, Message string
	Back, BackName string // a link back to the product, when there is one
}

const layout = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{template "title" .}}</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;max-width:34rem;margin:3rem auto;padding:0 1rem}
h1{font-size:1.5rem}
button,a.button{font:inherit;background:#1a56db;color:#fff;border:0;border-radius:.4rem;padding:.6rem 1.2rem;text-decoration:none;display:inline-block}
button:focus,a:focus{outline:3px solid #f59e0b;outline-offset:2px}
ul{padding-left:1.2rem}
</style></head><body><main>{{template "body" .}}</main></body></html>`

var pages = map[string]*template.Template{
	"connect": template.Must(template.Must(template.New("connect").Parse(layout)).Parse(`
{{define "title"}}Connect your calendar to {{.Product}}{{end}}
{{define "body"}}<h1>Connect your Google Calendar to {{.Product}}</h1>
<p>{{.Product}} asks to <strong>see</strong> your calendars:</p>
<ul><li>the list of your calendars,</li><li>the events on them (read only: nothing is changed),</li><li>your email address, to know which account you connected.</li></ul>
<p>You can disconnect at any time.</p>
<form method="post" action="start"><input type="hidden" name="link" value="{{.Link}}">
<button type="submit">Continue with Google</button></form>{{end}}`)),
	"disconnect": template.Must(template.Must(template.New("disconnect").Parse(layout)).Parse(`
{{define "title"}}Disconnect your calendar from {{.Product}}{{end}}
{{define "body"}}<h1>Disconnect your Google Calendar from {{.Product}}</h1>
<p>{{.Product}} will no longer see your calendars. Its access is removed from your Google Account, and what it stored of your calendars is deleted or kept as {{.Product}} decides.</p>
<form method="post" action="disconnect"><input type="hidden" name="link" value="{{.Link}}">
<button type="submit">Disconnect</button></form>{{end}}`)),
	"error": template.Must(template.Must(template.New("error").Parse(layout)).Parse(`
{{define "title"}}{{.Title}}{{end}}
{{define "body"}}<h1>{{.Title}}</h1><p role="alert">{{.Message}}</p>
{{if .Back}}<p><a class="button" href="{{.Back}}">Back to {{.BackName}}</a></p>{{end}}{{end}}`)),
}

func (h *Handler) page(w http.ResponseWriter, code int, data any) {
	name := "error"
	switch data.(type) {
	case pageConnect:
		name = "connect"
	case pageDisconnect:
		name = "disconnect"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_ = pages[name].Execute(w, data)
}
