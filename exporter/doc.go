// Package exporter is the one place where certguard's x509-certificate-exporter contract is
// written down, as the exporter's own pkg/registry is for it: the x509_* metric names and help
// texts, the label slots of a certificate's series, how label values are made valid, the source
// kinds and the error reasons of x509_source_errors_total, and the HTTP server that serves them
// within bounds. The sidecar (watch/) and the fleet service (fleet/) both render through it, so
// that one dashboard and one set of alerts read both, byte for byte.
package exporter
