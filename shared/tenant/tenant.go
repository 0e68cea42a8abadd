// Package tenant says who may act for whom. A tenant is a product (or one
// customer of a product) sharing a deployment: it publishes control messages
// on a control subscription of its own, and may enroll only Workspace users
// of its domains (or subjects listed for it) and, when allowed, OAuth
// grants. Calendars an operator watches, and everything enrolled through the
// default control subscription or the CLI, belong to the Default tenant,
// which is unrestricted.
package tenant

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Default is the operator's tenant: the CLI, the default control topic and
// calendars watched directly. Stored as "" on documents written before
// tenants existed; Of maps both to Default.
const Default = "default"

// Tenant is one entry of TENANTS.
type Tenant struct {
	Name string `json:"name"`
	// ControlSubscription is the id of its control topic's push
	// subscription: a control message delivered by it is this tenant's.
	ControlSubscription string `json:"controlSubscription"`
	// ControlTopic is the id of its control topic: where the Connect
	// function publishes its users' enrolls.
	ControlTopic string `json:"controlTopic,omitempty"`
	// Domains: Workspace domains whose users it may enroll by delegation.
	Domains []string `json:"domains,omitempty"`
	// Subjects: single Workspace users it may enroll besides its domains'.
	Subjects []string `json:"subjects,omitempty"`
	// OAuth: it may enroll users' OAuth grants (sealed refresh tokens).
	OAuth bool `json:"oauth"`
	// DeleteMirrorOnDisconnect: a disconnect deletes the user's mirrors
	// even when its message does not ask to (the tenant's policy).
	DeleteMirrorOnDisconnect bool `json:"deleteMirrorOnDisconnect,omitempty"`
	// DisplayName is the product's name on the Connect pages ("": Name).
	DisplayName string `json:"displayName,omitempty"`
	// ReturnURLs: where the Connect function may send its users back
	// (https URLs; a return URL must have one's scheme and host and start
	// with its path). None: no connect links.
	ReturnURLs []string `json:"returnUrls,omitempty"`
}

// Display is the name the Connect pages show.
func (t Tenant) Display() string {
	if t.DisplayName != "" {
		return t.DisplayName
	}
	return t.Name
}

// ReturnAllowed: u is on t's return-URL allowlist (same scheme and host as
// an entry, its path under the entry's), so a connect link never sends a
// user to a site the tenant did not list (no open redirect).
func (t Tenant) ReturnAllowed(u string) bool {
	got, err := url.Parse(u)
	if err != nil || got.User != nil || got.Fragment != "" {
		return false
	}
	for _, allowed := range t.ReturnURLs {
		a, err := url.Parse(allowed)
		if err == nil && got.Scheme == a.Scheme && got.Host == a.Host && strings.HasPrefix(got.Path, a.Path) {
			return true
		}
	}
	return false
}

// Of is the tenant a stored document names ("" is Default).
func Of(name string) string {
	if name == "" {
		return Default
	}
	return name
}

// Stored is how a document names a tenant: "" for Default, so documents
// of a deployment without tenants stay as they were.
func Stored(name string) string {
	if name == Default {
		return ""
	}
	return name
}

// Set is a deployment's tenants, Default included.
type Set struct {
	byName map[string]Tenant
	bySub  map[string]string
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,29}$`)

// Parse reads TENANTS (a JSON array of Tenant; "" is none) and adds Default
// on defaultSubscription (the CONTROL_SUBSCRIPTION; "" none). It reports
// every problem at once.
func Parse(tenantsJSON, defaultSubscription string) (Set, error) {
	s := Set{byName: map[string]Tenant{Default: {Name: Default, ControlSubscription: defaultSubscription, OAuth: true}}, bySub: map[string]string{}}
	if defaultSubscription != "" {
		s.bySub[defaultSubscription] = Default
	}
	if strings.TrimSpace(tenantsJSON) == "" {
		return s, nil
	}
	var list []Tenant
	dec := json.NewDecoder(strings.NewReader(tenantsJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return s, fmt.Errorf("TENANTS is not a JSON array of tenants: %w", err)
	}
	var errs []error
	for _, t := range list {
		if !nameRE.MatchString(t.Name) || t.Name == Default {
			errs = append(errs, fmt.Errorf("TENANTS: name %q is not 1-30 of a-z, 0-9, '-' starting with a letter, nor %q", t.Name, Default))
			continue
		}
		if _, dup := s.byName[t.Name]; dup {
			errs = append(errs, fmt.Errorf("TENANTS: %q twice", t.Name))
			continue
		}
		if t.ControlSubscription == "" {
			errs = append(errs, fmt.Errorf("TENANTS: %q has no controlSubscription", t.Name))
		} else if other, dup := s.bySub[t.ControlSubscription]; dup {
			errs = append(errs, fmt.Errorf("TENANTS: %q and %q share the control subscription %q", t.Name, other, t.ControlSubscription))
		}
		for i, d := range t.Domains {
			t.Domains[i] = strings.ToLower(d)
			if d == "" || strings.ContainsAny(d, "@ *") {
				errs = append(errs, fmt.Errorf("TENANTS: %q: domain %q is not a domain name", t.Name, d))
			}
		}
		for _, r := range t.ReturnURLs {
			if u, err := url.Parse(r); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1"))) || u.Host == "" {
				errs = append(errs, fmt.Errorf("TENANTS: %q: return URL %q is not an https URL", t.Name, r))
			}
		}
		for i, sub := range t.Subjects {
			t.Subjects[i] = strings.ToLower(sub)
			if strings.Count(sub, "@") != 1 {
				errs = append(errs, fmt.Errorf("TENANTS: %q: subject %q is not an email address", t.Name, sub))
			}
		}
		s.byName[t.Name] = t
		s.bySub[t.ControlSubscription] = t.Name
	}
	return s, errors.Join(errs...)
}

// BySubscription is the tenant whose control messages the subscription
// (an id) delivers.
func (s Set) BySubscription(sub string) (Tenant, bool) {
	name, ok := s.bySub[sub]
	if !ok {
		return Tenant{}, false
	}
	return s.byName[name], true
}

// Get is a tenant by name ("" is Default).
func (s Set) Get(name string) (Tenant, bool) {
	t, ok := s.byName[Of(name)]
	if !ok && Of(name) == Default {
		return Tenant{Name: Default, OAuth: true}, true // a zero Set
	}
	return t, ok
}

// Names are the configured tenants, Default included.
func (s Set) Names() []string {
	names := []string{Default}
	for n := range s.byName {
		if n != Default {
			names = append(names, n)
		}
	}
	return names
}

// MayDelegate: t may read subject's calendars by domain-wide delegation.
// Default may read anyone's (the operator's deployment); another tenant
// only its domains' users and its listed subjects. Compared in lower case,
// as Google compares addresses.
func (t Tenant) MayDelegate(subject string) bool {
	if t.Name == Default {
		return true
	}
	subject = strings.ToLower(subject)
	for _, s := range t.Subjects {
		if s == subject {
			return true
		}
	}
	at := strings.LastIndexByte(subject, '@')
	if at < 0 {
		return false
	}
	for _, d := range t.Domains {
		if subject[at+1:] == d {
			return true
		}
	}
	return false
}
