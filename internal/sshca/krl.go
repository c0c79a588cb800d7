package sshca

import (
	"bytes"
	"encoding/binary"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// The KRL format, from OpenSSH's PROTOCOL.krl (format version 1). Only the
// sections hpt writes are named here.
const (
	krlMagic         = "SSHKRL\n\x00" // the uint64 0x5353484b524c0a00
	krlFormatVersion = 1

	krlSectionCertificates = 1
	krlCertSerialList      = 0x20
	krlCertKeyID           = 0x23
)

// KRL is an OpenSSH key revocation list, the file sshd's RevokedKeys
// names. sshd reads it on every authentication, so a rewritten KRL takes
// effect at the next login attempt, without a reload.
type KRL struct {
	// Version increases with every change (krl_version).
	Version uint64
	// Generated is when it was made (generated_date, whole seconds).
	Generated time.Time
	// Comment is shown by ssh-keygen -Q -l.
	Comment string
	// Certs are the revoked certificates, one entry per CA.
	Certs []RevokedCerts
}

// RevokedCerts are the certificates of one CA that are revoked.
type RevokedCerts struct {
	// CA is the issuing CA's public key; nil means certificates of any CA
	// (useful for key ids).
	CA ssh.PublicKey
	// Serials are revoked serials; 0 is refused (OpenSSH cannot revoke it).
	Serials []uint64
	// KeyIDs are revoked KeyId strings: every certificate with that exact
	// KeyId is refused.
	KeyIDs []string
}

// Marshal encodes the KRL in OpenSSH's binary format. Serials are written
// sorted and deduplicated as serial lists, key ids sorted and deduplicated;
// the output depends only on the KRL's contents, so equal KRLs are equal
// bytes and a connector can tell whether anything changed.
func (k KRL) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(krlMagic)
	putU32(&b, krlFormatVersion)
	putU64(&b, k.Version)
	var gen uint64
	if !k.Generated.IsZero() && k.Generated.Unix() > 0 {
		gen = uint64(k.Generated.Unix())
	}
	putU64(&b, gen)
	putU64(&b, 0)      // flags: none defined
	putString(&b, nil) // reserved
	putString(&b, []byte(k.Comment))
	for _, rc := range k.Certs {
		sect, err := rc.marshal()
		if err != nil {
			return nil, err
		}
		if sect == nil {
			continue
		}
		b.WriteByte(krlSectionCertificates)
		putString(&b, sect)
	}
	return b.Bytes(), nil
}

func (rc RevokedCerts) marshal() ([]byte, error) {
	serials := slices.Clone(rc.Serials)
	slices.Sort(serials)
	serials = slices.Compact(serials)
	if len(serials) > 0 && serials[0] == 0 {
		return nil, &FieldError{Field: "certs.serials", Msg: "serial 0 cannot be revoked", kind: ErrInvalid}
	}
	ids := slices.Clone(rc.KeyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		// OpenSSH reads key ids as C strings.
		if id == "" || bytes.IndexByte([]byte(id), 0) >= 0 {
			return nil, invalid("certs.key_ids", "%q: empty or contains NUL", id)
		}
	}
	if len(serials) == 0 && len(ids) == 0 {
		return nil, nil
	}
	var sect bytes.Buffer
	var ca []byte
	if rc.CA != nil {
		ca = rc.CA.Marshal()
	}
	putString(&sect, ca)
	putString(&sect, nil) // reserved
	if len(serials) > 0 {
		var list bytes.Buffer
		for _, s := range serials {
			putU64(&list, s)
		}
		sect.WriteByte(krlCertSerialList)
		putString(&sect, list.Bytes())
	}
	if len(ids) > 0 {
		var list bytes.Buffer
		for _, id := range ids {
			putString(&list, []byte(id))
		}
		sect.WriteByte(krlCertKeyID)
		putString(&sect, list.Bytes())
	}
	return sect.Bytes(), nil
}

func putU32(b *bytes.Buffer, v uint32) { b.Write(binary.BigEndian.AppendUint32(nil, v)) }
func putU64(b *bytes.Buffer, v uint64) { b.Write(binary.BigEndian.AppendUint64(nil, v)) }
func putString(b *bytes.Buffer, s []byte) {
	putU32(b, uint32(len(s)))
	b.Write(s)
}
