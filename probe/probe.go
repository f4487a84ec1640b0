// Package probe reads the certificate a TLS endpoint serves: a handshake only, with no
// credentials and no request, bounded in every direction (a fixed pool of workers, a deadline per
// dial and handshake, at most one probe per endpoint per interval, jitter). An endpoint that does
// not answer is a result with an error, never a hang.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrNoCertificate is a handshake that completed without a certificate (an anonymous cipher
// suite cannot be negotiated by crypto/tls, so this is a server that misbehaves).
var ErrNoCertificate = errors.New("no certificate served")

// Handshake dials addr and completes a TLS handshake within timeout (dial and handshake
// together), then closes the connection without sending a byte of application data. It returns
// the chain the server sent, leaf first. serverName is the SNI sent ("" sends none: an IP
// address); the chain is not verified, since reading an expired or foreign leaf is the point, and
// no client certificate is offered even when the server asks for one.
func Handshake(ctx context.Context, addr, serverName string, timeout time.Duration) ([]*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{},
		Config: &tls.Config{
			ServerName: serverName,
			// Read, do not trust: the leaf is judged by certguard, not by crypto/tls.
			InsecureSkipVerify: true, //nolint:gosec
			// A server that asks for a client certificate gets none.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &tls.Certificate{}, nil
			},
			MinVersion: tls.VersionTLS12,
		},
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, fmt.Errorf("handshake with %s: %w", addr, ErrNoCertificate)
	}
	return chain, nil
}
