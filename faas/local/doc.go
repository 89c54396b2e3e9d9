// Package local is an OpenFaaS-compatible provider that runs functions on
// this machine without containers: Go handlers in-process, and local
// processes with the classic watchdog's semantics (request body on stdin,
// stdout is the response). It serves the provider REST API - deploy, list,
// update, delete, status, scale, invoke, system info - with the request and
// response types of github.com/openfaas/faas-provider, so the OpenFaaS
// gateway and go-sdk work against it unchanged.
//
// A deployment picks its runtime by its fields: with envProcess set, every
// request runs that command; otherwise its image must name a Go handler
// registered with RegisterImage. Labels tune each function:
//
//	dfaas.maxrate      capacity hint in req/s, read by the dfaas agent (see faas/openfaas)
//	dfaas.concurrency  requests run at once, beyond which the provider answers 429 (default 64)
//	dfaas.timeout      longest run of one request, as a Go duration (default 30s)
package local
