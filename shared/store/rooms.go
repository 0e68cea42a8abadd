package store

// Rooms of a Workspace customer (customers/{customerKey} and
// rooms/{roomKey}): Google's resources.calendars.list is customer-wide, so
// every enrolled domain of one customer lists the same rooms. A room's
// calendar is enrolled once, by the customer (enrolledBy = CustomerKey),
// and its room document remembers which domains listed it last: it is
// unenrolled only when no enrolled domain of the customer lists it any more.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Collections of rooms.
const (
	CollCustomers = "customers" // customers/{customerKey}
	CollRooms     = "rooms"     // rooms/{roomKey}
)

// Customer is customers/{customerKey}: the owner of a customer's room
// calendars and the guard of their listings (ApplyCustomerRooms: status,
// listedAt, calendars, as an identity's document guards its list).
type Customer struct {
	CustomerID string    `firestore:"customerId"`
	Status     string    `firestore:"status"` // always active: the domains hold the enrollment
	ListedAt   time.Time `firestore:"listedAt,omitempty"`
	Calendars  int       `firestore:"calendars"` // room calendars enrolled by the customer
	CreatedAt  time.Time `firestore:"createdAt"`
	UpdatedAt  time.Time `firestore:"updatedAt"`
}

// Room is rooms/{roomKey}: a room (resourceCategory CONFERENCE_ROOM) of a
// customer and the domains whose last directory diff listed it.
type Room struct {
	CustomerID    string    `firestore:"customerId"`
	ResourceEmail string    `firestore:"resourceEmail"` // its calendar id
	Domains       []string  `firestore:"domains"`
	UpdatedAt     time.Time `firestore:"updatedAt"`
}

// CustomerKey is the key of a Workspace customer ("w" + 26 base32hex); the
// room calendars it enrolled carry it as their enrolledBy.
func CustomerKey(customerID string) string { return "w" + hashKey("customer:"+customerID) }

// RoomKey is the key of a customer's room, by its resource email.
func RoomKey(customerID, resourceEmail string) string {
	return "r" + hashKey("room:"+customerID+":"+strings.ToLower(resourceEmail))
}

// CustomerRef is customers/{key}.
func (s *Store) CustomerRef(customerID string) *firestore.DocumentRef {
	return s.Client.Collection(CollCustomers).Doc(CustomerKey(customerID))
}

// PutCustomer makes sure a customer's document exists (active).
func (s *Store) PutCustomer(ctx context.Context, customerID string) error {
	if customerID == "" {
		return fmt.Errorf("store: a customer needs its id")
	}
	now := s.now()
	_, err := s.CustomerRef(customerID).Create(ctx, Customer{CustomerID: customerID, Status: StatusActive, CreatedAt: now, UpdatedAt: now})
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return err
}

// GetCustomer reads a customer's document; ErrNotFound when it has none.
func (s *Store) GetCustomer(ctx context.Context, customerID string) (Customer, error) {
	return getDoc[Customer](ctx, s.CustomerRef(customerID), "customer "+customerID)
}

// ListedRooms records which rooms of its customer one domain's directory
// lists now (resource emails): the domain is added to each room's
// domains and removed from those of the rooms it no longer lists. Each
// change is an array union or removal, so diffs of several domains of one
// customer may run at once.
func (s *Store) ListedRooms(ctx context.Context, customerID, domain string, emails []string) error {
	domain = strings.ToLower(domain)
	// One equality filter (no composite index): a customer has few rooms.
	all, err := readAll[Room](s.Client.Collection(CollRooms).Where("customerId", "==", customerID).Documents(ctx), "room")
	if err != nil {
		return err
	}
	now := s.now()
	type write struct {
		ref *firestore.DocumentRef
		v   map[string]any
	}
	var writes []write
	listed := map[string]bool{}
	for _, e := range emails {
		k := RoomKey(customerID, e)
		listed[k] = true
		if r, ok := all[k]; ok && slices.Contains(r.Domains, domain) {
			continue // listed by it already: no write (a daily diff of many rooms)
		}
		writes = append(writes, write{s.Client.Collection(CollRooms).Doc(k), map[string]any{"customerId": customerID,
			"resourceEmail": strings.ToLower(e), "domains": firestore.ArrayUnion(domain), "updatedAt": now}})
	}
	for k, r := range all {
		if !listed[k] && slices.Contains(r.Domains, domain) {
			writes = append(writes, write{s.Client.Collection(CollRooms).Doc(k), map[string]any{
				"domains": firestore.ArrayRemove(domain), "updatedAt": now}})
		}
	}
	for i := 0; i < len(writes); i += maxListingWrites {
		b := s.Client.Batch() //lint:ignore SA1019 batches of ≤500 are the fastest bulk write (see events.go)
		for _, w := range writes[i:min(i+maxListingWrites, len(writes))] {
			b.Set(w.ref, w.v, firestore.MergeAll)
		}
		if _, err := b.Commit(ctx); err != nil {
			return fmt.Errorf("rooms of %s listed by %s: %w", customerID, domain, err)
		}
	}
	return nil
}

// ForgetRoomDomain removes a domain from the rooms of its customer (the
// domain was unenrolled, or no longer enrolls rooms).
func (s *Store) ForgetRoomDomain(ctx context.Context, customerID, domain string) error {
	return s.ListedRooms(ctx, customerID, domain, nil)
}

// RoomsOfCustomer returns a customer's rooms by the key of their calendar
// (CalendarKey of the resource email).
func (s *Store) RoomsOfCustomer(ctx context.Context, customerID string) (map[string]Room, error) {
	all, err := readAll[Room](s.Client.Collection(CollRooms).Where("customerId", "==", customerID).Documents(ctx), "room")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Room, len(all))
	for _, r := range all {
		out[CalendarKey(r.ResourceEmail)] = r
	}
	return out, nil
}

// DomainsOfCustomer returns the enrolled domains (any status) of a customer by key.
func (s *Store) DomainsOfCustomer(ctx context.Context, customerID string) (map[string]Domain, error) {
	return readAll[Domain](s.Client.Collection(CollDomains).Where("customerId", "==", customerID).Documents(ctx), "domain")
}

// ApplyCustomerRooms is ApplyListing for a customer's rooms: the
// calendars carry the customer's key as enrolledBy, and the customer's
// document is the guard (a listing that began before the last applied one,
// of any of its domains, changes nothing).
func (s *Store) ApplyCustomerRooms(ctx context.Context, customerID string, l Listing, plan ListingPlanner) (Applied, error) {
	return s.applyListing(ctx, CustomerKey(customerID), s.CustomerRef(customerID), l, plan)
}

// AdoptRooms moves the room calendars a domain enrolled before rooms were
// the customer's (enrolledBy = DomainKey) to the customer, keeping their
// status and sync state, and counts the active ones on the customer. It
// returns how many it moved.
func (s *Store) AdoptRooms(ctx context.Context, domain, customerID string) (int, error) {
	from, to := DomainKey(domain), CustomerKey(customerID)
	legacy, err := s.CalendarsEnrolledBy(ctx, from)
	if err != nil || len(legacy) == 0 {
		return 0, err
	}
	var keys []string
	for k := range legacy {
		keys = append(keys, k)
	}
	moved := 0
	for i := 0; i < len(keys); i += maxListingWrites {
		part := keys[i:min(i+maxListingWrites, len(keys))]
		n := 0
		err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			n = 0
			refs := make([]*firestore.DocumentRef, len(part))
			for j, k := range part {
				refs[j] = s.CalendarRef(k)
			}
			snaps, err := tx.GetAll(refs)
			if err != nil {
				return err
			}
			active := 0
			now := s.now()
			for j, snap := range snaps {
				if by, _ := snap.DataAt("enrolledBy"); !snap.Exists() || by != from {
					continue
				}
				if st, _ := snap.DataAt("status"); st == StatusActive {
					active++
				}
				if err := tx.Update(refs[j], []firestore.Update{{Path: "enrolledBy", Value: to}, {Path: "updatedAt", Value: now}}); err != nil {
					return err
				}
				n++
			}
			return tx.Update(s.CustomerRef(customerID), []firestore.Update{{Path: "calendars", Value: firestore.Increment(active)},
				{Path: "updatedAt", Value: now}})
		})
		if err != nil {
			return moved, fmt.Errorf("adopt the rooms of %s: %w", domain, err)
		}
		moved += n
	}
	return moved, nil
}
