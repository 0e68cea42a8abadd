package store

// Applying one listing of an identity's calendar list (or a domain's
// rooms): a thin transaction around a pure plan. The store reads what the
// listing touches and writes what the plan says; what changes (enrolled,
// unwatched, read by another grant, free/busy only) is decided by the
// ListingPlanner the caller passes: shared/lifecycle's transition table.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
)

// Reader is a grant that can read a calendar, with the access role its
// calendar list gives it (Calendar.Readers).
type Reader struct {
	AuthMode     string `firestore:"authMode"`
	Subject      string `firestore:"subject,omitempty"`
	CredentialID string `firestore:"credentialId,omitempty"`
	// AccessRole: owner, writer, reader or freeBusyReader; "" when unknown
	// (a domain's rooms, read as the admin).
	AccessRole string `firestore:"accessRole,omitempty"`
	// ExternalID is the product's id of the reader identity.
	ExternalID string `firestore:"externalId,omitempty"`
}

// Grant is what the reader reads with (a calendar's readers are of its
// tenant: the caller sets Tenant when it matters).
func (r Reader) Grant() Grant {
	return Grant{AuthMode: r.AuthMode, Subject: r.Subject, CredentialID: r.CredentialID}
}

// ReaderOf is calendar c's grant as a reader of role.
func ReaderOf(c Calendar, role string) Reader {
	return Reader{AuthMode: c.AuthMode, Subject: c.Subject, CredentialID: c.CredentialID, AccessRole: role, ExternalID: c.ExternalID}
}

// ReadWith makes r the grant c is read with, as the reader key.
func (c *Calendar) ReadWith(key string, r Reader) {
	c.AuthMode, c.Subject, c.CredentialID, c.AccessRole, c.EnrolledBy = r.AuthMode, r.Subject, r.CredentialID, r.AccessRole, key
	c.ExternalID = r.ExternalID
}

// Listing is one listing of an identity's calendar list (or a domain's
// rooms), to apply (ApplyListing, ApplyCustomerRooms).
type Listing struct {
	// StartedAt is when the listing began (the lister's clock).
	StartedAt time.Time
	// Enroll: calendars the listing has and the filters keep, with the
	// lister's grant and its AccessRole.
	Enroll []Calendar
	// Unenroll: keys of calendars the lister read or enrolled that the
	// listing no longer has.
	Unenroll []string
	// UnenrollReason is the statusReason of the calendars unwatched.
	UnenrollReason string
	// LeftOut: calendars the listing has and the filters keep that the cap
	// on calendars per identity left out; recorded on the lister
	// (calendarsLeftOut), 0 once none is.
	LeftOut int
}

// ListingState is what a listing's transaction read: the planner's input.
type ListingState struct {
	Owner    string    // the lister: an identity's key, or a domain's (rooms)
	Status   string    // the lister's status
	ListedAt time.Time // when the last listing it applied began
	Listing  Listing
	// Stored: the calendars the listing names, by key (absent: not
	// registered).
	Stored map[string]Calendar
	Now    time.Time
}

// CalendarWrite is one calendar document a plan writes: created, or its
// enrollment fields (grant, enrolledBy, status, readers, accessRole) set.
type CalendarWrite struct {
	Key    string
	Create bool
	Cal    Calendar
	// DropToken: the calendar is read with another grant from now on,
	// which may see other details: the next sync is a full one, never with
	// another reader's token (nor its 404 streak).
	DropToken bool
	// MarkDirty: a sync is owed (set with DropToken on a calendar not
	// dirty yet), so a redelivered push syncs with the new reader.
	MarkDirty bool
}

// Handover is a calendar that another grant reads from now on.
type Handover struct {
	From Calendar // as it was read (its grant's channels to stop)
	To   Calendar // as it is read now (a channel and a full resync)
}

// ListingPlan is what a listing changes (ListingPlanner).
type ListingPlan struct {
	Stale  bool // a newer listing was applied, or the lister is not active: nothing changes
	Writes []CalendarWrite
	// Counts: changes of the calendars count of listers (identities by
	// key, domains by DomainKey), the lister's own included.
	Counts       map[string]int
	Enrolled     []Calendar // to watch and fully sync
	Unenrolled   []Calendar // unwatched: channels to stop, mirror kept or purged
	HandedOver   []Handover // read with another grant now
	FreeBusyOnly []Calendar // seen with free/busy access only: not synced, channels to stop
	Shared       int        // listed, but read with another grant
}

// ListingPlanner decides what a listing changes: pure, given what the
// transaction read.
type ListingPlanner func(ListingState) ListingPlan

// Applied is what ApplyListing changed.
type Applied struct {
	Stale        bool       // a newer listing was applied already, or the lister is not active: nothing changed
	Enrolled     []Calendar // registered or re-activated (need a channel and a first sync)
	Unenrolled   []Calendar // set unwatched (channels to stop, mirror to keep or purge)
	HandedOver   []Handover // read with another grant now (channels to remake, a full resync)
	FreeBusyOnly []Calendar // free/busy access only: not synced (channels to stop)
	Shared       int        // listed, but read with another grant
	Calendars    int        // calendars the identity has enrolled now
}

// maxListingWrites bounds one transaction of ApplyListing (Firestore takes
// 500 writes; a few are listers' documents).
const maxListingWrites = 400

// ApplyListing applies one listing of an identity's calendar list, in
// transactions of at most maxListingWrites calendars, each re-reading what
// it changes and applying only if no listing that began later was applied
// (ListedAt) and the identity is still active: concurrent or late listings
// of many instances converge on the newest one. plan decides what changes
// (lifecycle.PlanListing): the store keeps the transaction.
func (s *Store) ApplyListing(ctx context.Context, key string, l Listing, plan ListingPlanner) (Applied, error) {
	out, err := s.applyListing(ctx, key, s.IdentityRef(key), l, plan)
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

// CalendarsReadBy returns the calendars a lister (identity or domain) can
// read, by key, whatever their status.
func (s *Store) CalendarsReadBy(ctx context.Context, key string) (map[string]Calendar, error) {
	return readAll[Calendar](s.Client.Collection(CollCalendars).Where("readerKeys", "array-contains", key).Documents(ctx), "calendar")
}

// listerRef is the document of a lister: a domain's ("d…"), a customer's
// ("w…", its rooms) or an identity's.
func (s *Store) listerRef(key string) *firestore.DocumentRef {
	switch {
	case strings.HasPrefix(key, "d"):
		return s.DomainRef(key)
	case strings.HasPrefix(key, "w"):
		return s.Client.Collection(CollCustomers).Doc(key)
	}
	return s.IdentityRef(key)
}

func (s *Store) applyListing(ctx context.Context, key string, ref *firestore.DocumentRef, l Listing, plan ListingPlanner) (Applied, error) {
	if plan == nil {
		return Applied{}, errors.New("store: apply listing: no planner")
	}
	type part struct {
		enroll   []Calendar
		unenroll []string
	}
	var parts []part
	for i := 0; i == 0 || i < len(l.Enroll); i += maxListingWrites {
		parts = append(parts, part{enroll: l.Enroll[i:min(i+maxListingWrites, len(l.Enroll))]})
	}
	for i := 0; i < len(l.Unenroll); i += maxListingWrites {
		parts = append(parts, part{unenroll: l.Unenroll[i:min(i+maxListingWrites, len(l.Unenroll))]})
	}
	var out Applied
	for _, pt := range parts {
		sub := Listing{StartedAt: l.StartedAt.UTC(), Enroll: pt.enroll, Unenroll: pt.unenroll, UnenrollReason: l.UnenrollReason, LeftOut: l.LeftOut}
		var p ListingPlan
		err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			st, err := s.readListing(tx, key, ref, sub)
			if err != nil {
				return err
			}
			p = plan(st)
			if p.Stale {
				return nil
			}
			return s.writeListing(tx, key, ref, sub, p, st.Now)
		})
		if err != nil {
			return out, fmt.Errorf("apply listing of %s: %w", key, err)
		}
		if p.Stale {
			return Applied{Stale: true}, nil
		}
		out.Enrolled = append(out.Enrolled, p.Enrolled...)
		out.Unenrolled = append(out.Unenrolled, p.Unenrolled...)
		out.HandedOver = append(out.HandedOver, p.HandedOver...)
		out.FreeBusyOnly = append(out.FreeBusyOnly, p.FreeBusyOnly...)
		out.Shared += p.Shared
	}
	return out, nil
}

// readListing reads, in tx, the lister's guard fields and the calendars
// the listing names.
func (s *Store) readListing(tx *firestore.Transaction, key string, ref *firestore.DocumentRef, l Listing) (ListingState, error) {
	st := ListingState{Owner: key, Listing: l, Stored: map[string]Calendar{}, Now: s.now()}
	snap, err := tx.Get(ref)
	if err != nil {
		return st, wrapNotFound(err, ref.Parent.ID+" "+key)
	}
	status, _ := snap.DataAt("status")
	listedAt, _ := snap.DataAt("listedAt")
	st.Status, _ = status.(string)
	st.ListedAt, _ = listedAt.(time.Time)
	var refs []*firestore.DocumentRef
	for _, c := range l.Enroll {
		refs = append(refs, s.CalendarRef(c.Key()))
	}
	for _, k := range l.Unenroll {
		refs = append(refs, s.CalendarRef(k))
	}
	snaps, err := tx.GetAll(refs)
	if err != nil {
		return st, err
	}
	for _, sn := range snaps {
		if !sn.Exists() {
			continue
		}
		var c Calendar
		if err := sn.DataTo(&c); err != nil {
			return st, err
		}
		st.Stored[sn.Ref.ID] = c
	}
	return st, nil
}

// writeListing writes a plan in tx: the calendars, the listers' counts and
// the lister's listedAt.
func (s *Store) writeListing(tx *firestore.Transaction, key string, ref *firestore.DocumentRef, l Listing, p ListingPlan, now time.Time) error {
	if err := s.writePlan(tx, key, p, now); err != nil {
		return err
	}
	return tx.Update(ref, []firestore.Update{
		{Path: "listedAt", Value: l.StartedAt},
		{Path: "calendars", Value: firestore.Increment(p.Counts[key])},
		{Path: "calendarsLeftOut", Value: l.LeftOut},
		{Path: "updatedAt", Value: now},
	})
}

// writePlan writes a plan's calendars and the counts of listers other than
// skip.
func (s *Store) writePlan(tx *firestore.Transaction, skip string, p ListingPlan, now time.Time) error {
	for _, w := range p.Writes {
		if err := s.writeCalendar(tx, w, now); err != nil {
			return err
		}
	}
	for k, n := range p.Counts {
		if k == skip || n == 0 {
			continue
		}
		if err := tx.Update(s.listerRef(k), []firestore.Update{{Path: "calendars", Value: firestore.Increment(n)}}); err != nil {
			return err
		}
	}
	return nil
}

// writeCalendar creates a calendar, or sets its enrollment fields.
func (s *Store) writeCalendar(tx *firestore.Transaction, w CalendarWrite, now time.Time) error {
	r := s.CalendarRef(w.Key)
	c := w.Cal
	c.ReaderKeys = readerKeys(c.Readers)
	c.UpdatedAt = now
	if w.Create {
		c.CreatedAt = now
		return tx.Create(r, c)
	}
	readers, keys := any(c.Readers), any(c.ReaderKeys)
	if len(c.Readers) == 0 {
		readers, keys = firestore.Delete, firestore.Delete
	}
	ups := []firestore.Update{
		{Path: "authMode", Value: c.AuthMode}, optional("subject", c.Subject), optional("credentialId", c.CredentialID),
		optional("enrolledBy", c.EnrolledBy), {Path: "status", Value: c.Status}, optional("statusReason", c.StatusReason),
		{Path: "readers", Value: readers}, {Path: "readerKeys", Value: keys}, optional("accessRole", c.AccessRole),
		{Path: "updatedAt", Value: now},
	}
	if w.DropToken {
		ups = append(ups, firestore.Update{Path: "syncToken", Value: firestore.Delete})
		ups = append(ups, clearNotFound...)
	}
	if w.MarkDirty {
		ups = append(ups, firestore.Update{Path: "dirty", Value: true}, firestore.Update{Path: "dirtySince", Value: now})
	}
	return tx.Update(r, ups)
}

// ReplanCalendar applies, in one transaction, what plan decides for one
// calendar as stored now (a reader that lost access: shared/lifecycle);
// a Stale plan changes nothing. ErrNotFound if it is not registered.
func (s *Store) ReplanCalendar(ctx context.Context, key string, plan func(Calendar) ListingPlan) (ListingPlan, error) {
	ref := s.CalendarRef(key)
	defer s.lockCalendar(key)()
	var p ListingPlan
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		c, err := calendarTx(tx, ref)
		if err != nil {
			return err
		}
		if p = plan(c); p.Stale {
			return nil
		}
		return s.writePlan(tx, "", p, s.now())
	})
	return p, err
}

// readerKeys are the keys of readers, sorted (queried by CalendarsReadBy).
func readerKeys(readers map[string]Reader) []string {
	keys := make([]string, 0, len(readers))
	for k := range readers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
