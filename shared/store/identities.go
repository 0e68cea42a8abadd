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
)

// Collections of enrollment.
const (
	CollIdentities = "identities" // identities/{identityKey}
	CollDomains    = "domains"    // domains/{domainKey}
)

// Identity statuses (besides StatusActive and StatusAuthRevoked).
const StatusUnenrolled = "unenrolled"

// Filters choose which calendars of an identity's list are enrolled
// (messages.Filters, stored).
type Filters struct {
	MinAccessRole string   `firestore:"minAccessRole,omitempty"`
	PrimaryOnly   bool     `firestore:"primaryOnly,omitempty"`
	Include       []string `firestore:"include,omitempty"`
	Exclude       []string `firestore:"exclude,omitempty"`
}

// Identity is identities/{identityKey}: a user whose calendar list calsync
// follows, read by domain-wide delegation (Subject) or with a stored OAuth
// grant (CredentialID).
type Identity struct {
	AuthMode     string  `firestore:"authMode"`
	Subject      string  `firestore:"subject,omitempty"`
	CredentialID string  `firestore:"credentialId,omitempty"`
	Email        string  `firestore:"email,omitempty"` // for operators
	Status       string  `firestore:"status"`          // active, unenrolled, auth_revoked
	StatusReason string  `firestore:"statusReason,omitempty"`
	Filters      Filters `firestore:"filters"`
	// DeleteMirrorOnRemove: a calendar leaving the list loses its mirror too.
	DeleteMirrorOnRemove bool `firestore:"deleteMirrorOnRemove,omitempty"`
	// Domain: enrolled by the directory of this Workspace domain (its diff
	// unenrolls the identity when the user is suspended or deleted).
	Domain string `firestore:"domain,omitempty"`
	// ListedAt is when the listing last applied began (the applying worker's
	// clock): a listing that began earlier is stale and is not applied, and
	// a notification received before it is covered.
	ListedAt  time.Time `firestore:"listedAt,omitempty"`
	Calendars int       `firestore:"calendars"` // calendars enrolled through it
	// ChannelEpoch roots the chain of its list's channel ids
	// (ClaimListChannelEpoch), as a calendar's does.
	ChannelEpoch string    `firestore:"channelEpoch,omitempty"`
	CreatedAt    time.Time `firestore:"createdAt"`
	UpdatedAt    time.Time `firestore:"updatedAt"`
}

// Domain is domains/{domainKey}: a Workspace domain enrolled with its
// directory (users, and rooms when Rooms).
type Domain struct {
	Domain               string  `firestore:"domain"`
	Admin                string  `firestore:"admin"` // the admin impersonated for the Directory API and rooms
	Rooms                bool    `firestore:"rooms"`
	Filters              Filters `firestore:"filters"`
	DeleteMirrorOnRemove bool    `firestore:"deleteMirrorOnRemove,omitempty"`
	// CustomerID is the Workspace customer the domain belongs to (its
	// users' customerId): the owner of its rooms (rooms.go).
	CustomerID string `firestore:"customerId,omitempty"`
	// Status: active, unenrolled, or the refusal that stops its directory
	// from being read (admin_policy, delegation_unauthorized, api_disabled,
	// ...: shared/lifecycle), cleared by the next diff that reads it.
	Status              string    `firestore:"status"`
	StatusReason        string    `firestore:"statusReason,omitempty"`
	LastDirectorySyncAt time.Time `firestore:"lastDirectorySyncAt,omitempty"`
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
// settings and status active on an existing one (keeping ListedAt and the
// count). It returns the key.
func (s *Store) PutIdentity(ctx context.Context, id Identity) (string, error) {
	key := id.Grant().IdentityKey()
	ref := s.IdentityRef(key)
	now := s.now()
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		_, err := tx.Get(ref)
		if isNotFound(err) {
			id.Status, id.CreatedAt, id.UpdatedAt, id.ListedAt, id.Calendars = StatusActive, now, now, time.Time{}, 0
			return tx.Create(ref, id)
		}
		if err != nil {
			return err
		}
		return tx.Update(ref, []firestore.Update{
			{Path: "authMode", Value: id.AuthMode},
			optional("subject", id.Subject),
			optional("credentialId", id.CredentialID),
			optional("email", id.Email),
			{Path: "status", Value: StatusActive},
			{Path: "statusReason", Value: firestore.Delete},
			{Path: "filters", Value: id.Filters},
			{Path: "deleteMirrorOnRemove", Value: id.DeleteMirrorOnRemove},
			optional("domain", id.Domain),
			{Path: "updatedAt", Value: now},
		})
	})
	return key, err
}

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
			d.Status, d.CreatedAt, d.UpdatedAt = StatusActive, now, now
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

// Enrollment changes of one listing (ApplyListing).
type Listing struct {
	// StartedAt is when the listing began (the lister's clock).
	StartedAt time.Time
	// Enroll: calendars the listing wants enrolled, read with the
	// identity's auth; Keep: keys of calendars it lists and that stay.
	Enroll []Calendar
	// Unenroll: keys of calendars the identity enrolled that the listing no
	// longer has.
	Unenroll []string
	// UnenrollReason is the statusReason of the calendars unenrolled.
	UnenrollReason string
}

// Applied is what ApplyListing changed.
type Applied struct {
	Stale      bool       // a newer listing was applied already, or the identity is not active: nothing changed
	Enrolled   []Calendar // registered or re-activated (need a channel and a first sync)
	Unenrolled []Calendar // set unwatched (channels to stop, mirror to keep or purge)
	Shared     int        // listed, but enrolled by another identity: left to it
	Calendars  int        // calendars the identity has enrolled now
}

// maxListingWrites bounds one transaction of ApplyListing (Firestore takes
// 500 writes; one is the identity document).
const maxListingWrites = 400

// ApplyListing applies one listing of an identity's calendar list, in
// transactions of at most maxListingWrites calendars, each re-reading what
// it changes and applying only if no listing that began later was applied
// (ListedAt), and the identity is still active. So concurrent or late
// listings of many instances converge on the newest one: a stale listing
// changes nothing. A calendar enrolled by another identity (or registered by
// an operator, enrolledBy unset, and active) is left alone; one this
// identity enrolled and the listing lost is set unwatched.
func (s *Store) ApplyListing(ctx context.Context, key string, l Listing) (Applied, error) {
	out, err := s.applyListing(ctx, key, s.IdentityRef(key), l)
	if err != nil || out.Stale {
		return out, err
	}
	id, err := s.GetIdentity(ctx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return out, err
	}
	out.Calendars = id.Calendars
	return out, nil
}

// applyListing applies a listing owned by key, guarded by the document ref
// (its status, listedAt and calendars fields).
func (s *Store) applyListing(ctx context.Context, key string, ref *firestore.DocumentRef, l Listing) (Applied, error) {
	var out Applied
	type op struct {
		enroll *Calendar
		key    string
	}
	var ops []op
	for i := range l.Enroll {
		ops = append(ops, op{enroll: &l.Enroll[i], key: CalendarKey(l.Enroll[i].CalendarID)})
	}
	for _, k := range l.Unenroll {
		ops = append(ops, op{key: k})
	}
	start := l.StartedAt.UTC()
	for i := 0; i == 0 || i < len(ops); i += maxListingWrites {
		part := ops[i:min(i+maxListingWrites, len(ops))]
		var enrolled, unenrolled []Calendar
		var shared, delta int
		err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			enrolled, unenrolled, shared, delta = nil, nil, 0, 0
			snap, err := tx.Get(ref)
			if err != nil {
				return wrapNotFound(err, ref.Parent.ID+" "+key)
			}
			status, _ := snap.DataAt("status")
			listedAt, _ := snap.DataAt("listedAt")
			if la, _ := listedAt.(time.Time); status != StatusActive || start.Before(la) {
				out.Stale = true
				return nil
			}
			refs := make([]*firestore.DocumentRef, len(part))
			for j, o := range part {
				refs[j] = s.CalendarRef(o.key)
			}
			snaps, err := tx.GetAll(refs)
			if err != nil {
				return err
			}
			now := s.now()
			var writes []func() error
			for j, o := range part {
				var c Calendar
				exists := snaps[j].Exists()
				if exists {
					if err := snaps[j].DataTo(&c); err != nil {
						return err
					}
				}
				if o.enroll == nil { // unenroll
					// Ours and not unwatched yet: active, or stopped by a
					// problem meanwhile (not_found, auth_revoked, error).
					if !exists || c.EnrolledBy != key || c.Status == StatusUnwatched {
						continue
					}
					r := refs[j]
					writes = append(writes, func() error {
						return tx.Update(r, []firestore.Update{{Path: "status", Value: StatusUnwatched},
							optional("statusReason", l.UnenrollReason), {Path: "updatedAt", Value: now}})
					})
					if c.Status == StatusActive {
						delta--
					}
					c.Status = StatusUnwatched
					unenrolled = append(unenrolled, c)
					continue
				}
				want := *o.enroll
				want.EnrolledBy = key
				switch {
				case !exists:
					nc := Calendar{CalendarID: want.CalendarID, AuthMode: want.AuthMode, Subject: want.Subject,
						CredentialID: want.CredentialID, EnrolledBy: key, Status: StatusActive, CreatedAt: now, UpdatedAt: now}
					r := refs[j]
					writes = append(writes, func() error { return tx.Create(r, nc) })
					enrolled = append(enrolled, nc)
					delta++
				case c.EnrolledBy == key && c.Status == StatusActive:
					// Already ours and live: nothing to do.
				case c.Status == StatusActive && c.EnrolledBy != key:
					shared++ // another identity's or an operator's
				default:
					// Ours but not active (left the list earlier), or
					// inactive and someone else's: ours from now on, its
					// sync state kept.
					r := refs[j]
					writes = append(writes, func() error {
						return tx.Update(r, []firestore.Update{
							{Path: "authMode", Value: want.AuthMode}, optional("subject", want.Subject),
							optional("credentialId", want.CredentialID), {Path: "enrolledBy", Value: key},
							{Path: "status", Value: StatusActive}, {Path: "statusReason", Value: firestore.Delete},
							{Path: "updatedAt", Value: now}})
					})
					c.AuthMode, c.Subject, c.CredentialID, c.EnrolledBy, c.Status = want.AuthMode, want.Subject, want.CredentialID, key, StatusActive
					enrolled = append(enrolled, c)
					delta++
				}
			}
			for _, w := range writes {
				if err := w(); err != nil {
					return err
				}
			}
			return tx.Update(ref, []firestore.Update{
				{Path: "listedAt", Value: start},
				{Path: "calendars", Value: firestore.Increment(delta)},
				{Path: "updatedAt", Value: now},
			})
		})
		if err != nil {
			return out, fmt.Errorf("apply listing of %s: %w", key, err)
		}
		if out.Stale {
			return out, nil
		}
		out.Enrolled = append(out.Enrolled, enrolled...)
		out.Unenrolled = append(out.Unenrolled, unenrolled...)
		out.Shared += shared
	}
	return out, nil
}
