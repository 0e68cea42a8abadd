package store

// Grant is what calsync reads a calendar or an identity's calendar list
// with: the function's own identity (AuthADC), domain-wide delegation as
// Subject (AuthDelegation), or a user's stored OAuth grant (AuthOAuth,
// CredentialID). Calendars and identities carry its fields; Key is its one
// name.
type Grant struct {
	AuthMode     string `firestore:"authMode"`
	Subject      string `firestore:"subject,omitempty"`
	CredentialID string `firestore:"credentialId,omitempty"`
	// Tenant is whose grant it is ("": the default tenant): the Calendar
	// client factory signs a delegation only for a subject the tenant may
	// read. Not part of Key.
	Tenant string `firestore:"-"`
}

// Key names the grant: "adc", "subject:EMAIL" (SubjectName) or
// "credential:ID". Google's per-user quota, calsync's rate limiter and
// client cache count by it; operators read it; hashed, it is the key of the
// identity the grant reads the list of (IdentityKey).
func (g Grant) Key() string {
	switch g.AuthMode {
	case AuthDelegation:
		return SubjectName(g.Subject) // A-Z folded only: see SubjectName
	case AuthOAuth:
		return "credential:" + g.CredentialID
	}
	return "adc"
}

// IdentityKey is the key of the identity read with the grant
// (identities/{key}): "i" and 26 base32hex characters of the SHA-256 of
// Key, like a calendar key.
func (g Grant) IdentityKey() string { return "i" + hashKey(g.Key()) }

// Grant is what the calendar is read with.
func (c Calendar) Grant() Grant {
	return Grant{AuthMode: c.AuthMode, Subject: c.Subject, CredentialID: c.CredentialID, Tenant: c.Tenant}
}

// Grant is what the identity's list is read with.
func (i Identity) Grant() Grant {
	return Grant{AuthMode: i.AuthMode, Subject: i.Subject, CredentialID: i.CredentialID, Tenant: i.Tenant}
}
