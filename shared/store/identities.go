package store

// Enrolled identities (identities/{identityKey}) and Workspace domains
// (domains/{domainKey}): who calsync discovers calendars for (shared/enroll).

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/tenant"
)

// Collections of enrollment.
const (
	CollIdentities = "identities" // identities/{identityKey}
	CollDomains    = "domains"    // domains/{domainKey}
)

// Identity statuses (besides StatusActive and StatusAuthRevoked).
const StatusUnenrolled = "unenrolled"

// Identity is identities/{identityKey}: a user whose calendar list calsync
// follows, read by domain-wide delegation (Subject) or with a stored OAuth
// grant (CredentialID).
type Identity struct {
	AuthMode     string `firestore:"authMode"`
	Subject      string `firestore:"subject,omitempty"`
	CredentialID string `firestore:"credentialId,omitempty"`
	Email        string `firestore:"email,omitempty"` // for operators
	// Tenant owns the identity ("": the default tenant); only it may act on
	// it, and its calendars are that tenant's.
	Tenant string `firestore:"tenant,omitempty"`
	// ExternalID is the product's own id for the user (its enroll's).
	ExternalID   string           `firestore:"externalId,omitempty"`
	Status       string           `firestore:"status"` // active, unenrolled, auth_revoked
	StatusReason string           `firestore:"statusReason,omitempty"`
	Filters      messages.Filters `firestore:"filters"`
	// DeleteMirrorOnRemove: a calendar leaving the list loses its mirror too.
	DeleteMirrorOnRemove bool `firestore:"deleteMirrorOnRemove,omitempty"`
	// Domain: enrolled by the directory of this Workspace domain (its diff
	// unenrolls the identity when the user is suspended or deleted).
	Domain string `firestore:"domain,omitempty"`
	// ListedAt is when the listing last applied began (the applying worker's
	// clock): a listing that began earlier is stale and is not applied, and
	// a notification received before it is covered.
	ListedAt  time.Time `firestore:"listedAt,omitempty"`
	Calendars int       `firestore:"calendars"` // calendars read with it (it is their best reader), unwatched ones not counted
	// CalendarsLeftOut: calendars of its list that MAX_CALENDARS_PER_IDENTITY
	// left out at the last listing (0: none); it stays active.
	CalendarsLeftOut int `firestore:"calendarsLeftOut,omitempty"`
	// ChannelEpoch roots the chain of its list's channel ids
	// (ClaimListChannelEpoch), as a calendar's does.
	ChannelEpoch string    `firestore:"channelEpoch,omitempty"`
	CreatedAt    time.Time `firestore:"createdAt"`
	UpdatedAt    time.Time `firestore:"updatedAt"`
}

// IdentitiesOfExternalID are a tenant's identities the product gave
// externalID, by key.
func (s *Store) IdentitiesOfExternalID(ctx context.Context, tenantName, externalID string) (map[string]Identity, error) {
	// By externalId alone (a single-field index; the default tenant's
	// documents have no tenant field), the tenant checked here.
	docs, err := s.Client.Collection(CollIdentities).Where("externalId", "==", externalID).Documents(ctx).GetAll()
	if err != nil {
		return nil, err
	}
	out := map[string]Identity{}
	for _, d := range docs {
		var id Identity
		if err := d.DataTo(&id); err != nil {
			return nil, err
		}
		if tenant.Of(id.Tenant) == tenant.Of(tenantName) {
			out[d.Ref.ID] = id
		}
	}
	return out, nil
}

// Attribution says whose the identity (of key) is in messages.
func (i Identity) Attribution(key string) messages.Attribution {
	return messages.Attribution{Tenant: tenant.Of(i.Tenant), IdentityKey: key, ExternalID: i.ExternalID}
}

// Domain is domains/{domainKey}: a Workspace domain enrolled with its
// directory (users, and rooms when Rooms).
type Domain struct {
	Domain               string           `firestore:"domain"`
	Admin                string           `firestore:"admin"` // the admin impersonated for the Directory API and rooms
	Rooms                bool             `firestore:"rooms"`
	Filters              messages.Filters `firestore:"filters"`
	DeleteMirrorOnRemove bool             `firestore:"deleteMirrorOnRemove,omitempty"`
	// CustomerID is the Workspace customer the domain belongs to (its
	// users' customerId): the owner of its rooms (rooms.go).
	CustomerID string `firestore:"customerId,omitempty"`
	// Status: active, unenrolled, or the refusal that stops its directory
	// from being read (admin_policy, delegation_unauthorized, api_disabled,
	// ...: shared/lifecycle), cleared by the next diff that reads it.
	Status              string    `firestore:"status"`
	StatusReason        string    `firestore:"statusReason,omitempty"`
	LastDirectorySyncAt time.Time `firestore:"lastDirectorySyncAt,omitempty"`
	// DirectorySyncStartedAt: when the last diff began (PutDomain, which
	// a diff follows at once, and DirectorySyncStarted). Later than
	// LastDirectorySyncAt: a diff is in progress (DiffInProgress).
	DirectorySyncStartedAt time.Time `firestore:"directorySyncStartedAt,omitempty"`
	// ListedAt and Calendars: the rooms' listing guard and count before
	// rooms were the customer's (AdoptRooms moves them).
	ListedAt  time.Time `firestore:"listedAt,omitempty"`
	Calendars int       `firestore:"calendars"`
	Users     int       `firestore:"users"`
	RoomCount int       `firestore:"roomCount"`
	CreatedAt time.Time `firestore:"createdAt"`
	UpdatedAt time.Time `firestore:"updatedAt"`
}

// SubjectName names a delegation subject: "subject:" and the email with
// only A-Z lower-cased. Deliberately not Unicode case folding: that maps a
// Kelvin sign (U+212A) to "k", so a non-ASCII spelling would share the
// identity of its ASCII twin. (Control messages refuse non-ASCII subjects;
// this keeps any that reach here apart all the same.)
func SubjectName(subject string) string {
	b := []byte(subject)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return "subject:" + string(b)
}

// DomainKey is the key of a Workspace domain ("d" + 26 base32hex); rooms
// enrolled with it carry it as their enrolledBy.
func DomainKey(domain string) string { return "d" + hashKey("domain:"+strings.ToLower(domain)) }

func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToLower(keyEncoding.EncodeToString(sum[:16]))
}

// IdentityRef is identities/{key}.
func (s *Store) IdentityRef(key string) *firestore.DocumentRef {
	return s.Client.Collection(CollIdentities).Doc(key)
}

// DomainRef is domains/{key}.
func (s *Store) DomainRef(key string) *firestore.DocumentRef {
	return s.Client.Collection(CollDomains).Doc(key)
}

// GetIdentity reads identities/{key}; ErrNotFound when it is not enrolled.
func (s *Store) GetIdentity(ctx context.Context, key string) (Identity, error) {
	return getDoc[Identity](ctx, s.IdentityRef(key), "identity "+key)
}

// PutIdentity enrolls an identity: creates its document, or sets its
// settings on an existing one (keeping ListedAt and the count); its status
// is what next says. It returns the key.
func (s *Store) PutIdentity(ctx context.Context, id Identity, next Enrollment) (key, previous string, err error) {
	key = id.Grant().IdentityKey()
	ref := s.IdentityRef(key)
	now := s.now()
	err = s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		previous = ""
		snap, err := tx.Get(ref)
		if isNotFound(err) {
			id.Status, id.CreatedAt, id.UpdatedAt, id.ListedAt, id.Calendars = next(""), now, now, time.Time{}, 0
			return tx.Create(ref, id)
		}
		if err != nil {
			return err
		}
		var cur Identity
		if err := snap.DataTo(&cur); err != nil {
			return err
		}
		if cur.Tenant != id.Tenant {
			return fmt.Errorf("%w: identity %s is of tenant %s", ErrOtherTenant, key, tenant.Of(cur.Tenant))
		}
		previous = cur.Status
		if id.ExternalID == "" {
			id.ExternalID = cur.ExternalID // an enroll without one keeps the product's id
		}
		return tx.Update(ref, []firestore.Update{
			{Path: "authMode", Value: id.AuthMode},
			optional("subject", id.Subject),
			optional("credentialId", id.CredentialID),
			optional("email", id.Email),
			{Path: "status", Value: next(cur.Status)},
			{Path: "statusReason", Value: firestore.Delete},
			{Path: "filters", Value: id.Filters},
			{Path: "deleteMirrorOnRemove", Value: id.DeleteMirrorOnRemove},
			optional("domain", id.Domain),
			optional("externalId", id.ExternalID),
			{Path: "updatedAt", Value: now},
		})
	})
	return key, previous, err
}

// ErrOtherTenant: the identity is another tenant's (an identity belongs to
// exactly one tenant; only it may act on it).
var ErrOtherTenant = errors.New("store: the identity belongs to another tenant")

// RevokeIdentity sets an active identity auth_revoked (its grant no longer
// reads its list) and reports whether it did: an identity unenrolled
// meanwhile (a suspended user's grant fails while the directory diff
// unenrolls it) stays unenrolled. ErrNotFound when it is not enrolled.
func (s *Store) RevokeIdentity(ctx context.Context, key, reason string) (bool, error) {
	return s.DenyIdentity(ctx, key, StatusAuthRevoked, reason)
}

// DenyIdentity is RevokeIdentity with another refusal's status (scope
// missing, API disabled, ...).
func (s *Store) DenyIdentity(ctx context.Context, key, status, reason string) (bool, error) {
	ref := s.IdentityRef(key)
	revoked := false
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		revoked = false
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "identity "+key)
		}
		if st, _ := snap.DataAt("status"); st != StatusActive {
			return nil
		}
		revoked = true
		return tx.Update(ref, []firestore.Update{
			{Path: "status", Value: status},
			optional("statusReason", reason),
			{Path: "updatedAt", Value: s.now()},
		})
	})
	return revoked, err
}

// SetIdentityStatus records an identity's status and reason; ErrNotFound
// when it is not enrolled.
func (s *Store) SetIdentityStatus(ctx context.Context, key, status, reason string) error {
	_, err := s.IdentityRef(key).Update(ctx, []firestore.Update{
		{Path: "status", Value: status},
		optional("statusReason", reason),
		{Path: "updatedAt", Value: s.now()},
	})
	return wrapNotFound(err, "identity "+key)
}

// AllIdentities returns every identity by key.
func (s *Store) AllIdentities(ctx context.Context) (map[string]Identity, error) {
	return readAll[Identity](s.Client.Collection(CollIdentities).Documents(ctx), "identity")
}

// IdentitiesOfDomain returns the identities a domain's directory enrolled, by key.
func (s *Store) IdentitiesOfDomain(ctx context.Context, domain string) (map[string]Identity, error) {
	return readAll[Identity](s.Client.Collection(CollIdentities).Where("domain", "==", strings.ToLower(domain)).Documents(ctx), "identity")
}

// CalendarsEnrolledBy returns the calendars an identity (or a domain's
// rooms) enrolled, by key, whatever their status.
func (s *Store) CalendarsEnrolledBy(ctx context.Context, key string) (map[string]Calendar, error) {
	return s.calendarsWhere(ctx, "enrolledBy", key)
}

// GetDomain reads domains/{DomainKey(domain)}; ErrNotFound when not enrolled.
func (s *Store) GetDomain(ctx context.Context, domain string) (Domain, error) {
	return getDoc[Domain](ctx, s.DomainRef(DomainKey(domain)), "domain "+domain)
}

// PutDomain enrolls a domain (creates it, or sets its settings, and
// status active if it was unenrolled, keeping its history).
func (s *Store) PutDomain(ctx context.Context, d Domain) error {
	d.Domain = strings.ToLower(d.Domain)
	ref := s.DomainRef(DomainKey(d.Domain))
	now := s.now()
	return s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if isNotFound(err) {
			d.Status, d.CreatedAt, d.UpdatedAt, d.DirectorySyncStartedAt = StatusActive, now, now, now
			return tx.Create(ref, d)
		}
		if err != nil {
			return err
		}
		updates := append([]firestore.Update{
			{Path: "admin", Value: d.Admin},
			{Path: "rooms", Value: d.Rooms},
			{Path: "filters", Value: d.Filters},
			{Path: "deleteMirrorOnRemove", Value: d.DeleteMirrorOnRemove},
			{Path: "updatedAt", Value: now},
			{Path: "directorySyncStartedAt", Value: now},
		}, ifSet("customerId", d.CustomerID)...)
		// Unenrolled: enrolled again. A refusal's status stays: the diff
		// that follows clears it through shared/lifecycle (logged).
		if st, _ := snap.DataAt("status"); st == StatusUnenrolled {
			updates = append(updates, firestore.Update{Path: "status", Value: StatusActive},
				firestore.Update{Path: "statusReason", Value: firestore.Delete})
		}
		return tx.Update(ref, updates)
	})
}

// ifSet updates path to v only when v is set (an unknown value keeps the stored one).
func ifSet(path, v string) []firestore.Update {
	if v == "" {
		return nil
	}
	return []firestore.Update{{Path: path, Value: v}}
}

// SetDomainStatus records a domain's status (active, unenrolled).
func (s *Store) SetDomainStatus(ctx context.Context, domain, status string) error {
	_, err := s.DomainRef(DomainKey(domain)).Update(ctx, []firestore.Update{
		{Path: "status", Value: status}, {Path: "updatedAt", Value: s.now()}})
	return wrapNotFound(err, "domain "+domain)
}

// DenyDomain records the refusal (status, reason) that keeps a domain's
// directory from being read and reports whether it changed anything: an
// unenrolled domain, or one with that status already, is left as it is.
func (s *Store) DenyDomain(ctx context.Context, domain, status, reason string) (bool, error) {
	return s.domainTransition(ctx, domain, func(cur string) bool { return cur != StatusUnenrolled && cur != status },
		[]firestore.Update{{Path: "status", Value: status}, optional("statusReason", reason)})
}

// ClearDomainStatus sets a domain whose directory was refused active again
// and reports whether it changed anything (active or unenrolled: no).
func (s *Store) ClearDomainStatus(ctx context.Context, domain string) (bool, error) {
	return s.domainTransition(ctx, domain, func(cur string) bool { return cur != StatusUnenrolled && cur != StatusActive },
		[]firestore.Update{{Path: "status", Value: StatusActive}, {Path: "statusReason", Value: firestore.Delete}})
}

// domainTransition applies updates to a domain in a transaction when its
// current status allows it, so concurrent runs change (and log) it once.
func (s *Store) domainTransition(ctx context.Context, domain string, allowed func(status string) bool, updates []firestore.Update) (bool, error) {
	ref := s.DomainRef(DomainKey(domain))
	changed := false
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		changed = false
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "domain "+domain)
		}
		if st, _ := snap.DataAt("status"); !allowed(fmt.Sprint(st)) {
			return nil
		}
		changed = true
		return tx.Update(ref, append(updates, firestore.Update{Path: "updatedAt", Value: s.now()}))
	})
	return changed, err
}

// AllDomains returns every enrolled domain by key.
func (s *Store) AllDomains(ctx context.Context) (map[string]Domain, error) {
	return readAll[Domain](s.Client.Collection(CollDomains).Documents(ctx), "domain")
}

// DirectorySyncStarted records that a diff of the domain began at at.
func (s *Store) DirectorySyncStarted(ctx context.Context, domain string, at time.Time) error {
	_, err := s.DomainRef(DomainKey(domain)).Update(ctx, []firestore.Update{{Path: "directorySyncStartedAt", Value: at.UTC()}})
	return wrapNotFound(err, "domain "+domain)
}

// DiffInProgress reports whether a diff of d began less than within ago and
// has not finished: another diff begun now would only race it (the later
// reading wins; the earlier one's work is redone or reported superseded).
func (d Domain) DiffInProgress(now time.Time, within time.Duration) bool {
	return d.DirectorySyncStartedAt.After(d.LastDirectorySyncAt) && now.Sub(d.DirectorySyncStartedAt) < within
}

// DirectorySynced records a finished directory diff of a domain (and its
// customer, when known).
func (s *Store) DirectorySynced(ctx context.Context, domain, customerID string, at time.Time, users, rooms int) error {
	_, err := s.DomainRef(DomainKey(domain)).Update(ctx, append([]firestore.Update{
		{Path: "lastDirectorySyncAt", Value: at.UTC()},
		{Path: "users", Value: users},
		{Path: "roomCount", Value: rooms},
		{Path: "updatedAt", Value: s.now()},
	}, ifSet("customerId", customerID)...))
	return wrapNotFound(err, "domain "+domain)
}
