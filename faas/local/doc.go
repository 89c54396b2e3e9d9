// Package local is an OpenFaaS-compatible provider that runs functions on
// this machine without containers: Go handlers in-process, and local
// processes with the classic watchdog's semantics (request body on stdin,
// stdout is the response). It serves the provider REST API - deploy, list,
// update, delete, status, scale, invoke, system info, secrets, logs,
// namespaces - with the request and
// response types of github.com/openfaas/faas-provider, so the OpenFaaS
// gateway and go-sdk work against it unchanged.
//
// A deployment picks its runtime by its fields: with envProcess set, every
// request runs that command, as OpenFaaS's classic watchdog runs it (its
// environment: Http_Method, Http_Path without /function/<name>, Http_Query,
// Http_<Header>; stderr combined into the answer unless combine_output is
// false; content_type; 408 past exec_timeout; 429 beyond max_inflight, as
// beyond the dfaas.concurrency label); otherwise its image must name a Go handler
// registered with RegisterImage, or a built-in one (BuiltinImages):
// dfaas/cpu and dfaas/cpu-per-kib are functions of a real cost in CPU time,
// set by the deployment's environment variable "cost" (per call, or per KiB
// of request body; default 10ms). Labels tune each function:
//
//	dfaas.maxrate      the most req/s a dfaas node runs of it (a bound on what it measures; see faas/openfaas)
//	dfaas.slo          latency objective of the capacity a dfaas node measures, such as p95=200ms
//	dfaas.maxrtt       how far, in round-trip time, a dfaas node may forward it, such as 20ms
//	dfaas.concurrency  requests run at once, beyond which the provider answers 429 (default 64)
//	dfaas.timeout      longest run of one request, as a Go duration (default 30s)
//
// Secrets work as OpenFaaS's providers keep them: the secrets API
// (/system/secrets: list, create, update, delete, by namespace) stores each
// in a file of its own (0600) under Config.SecretsDir, and a deployment
// names those its function may read (one it names that the namespace lacks
// is refused). A process function finds them as files in a directory of
// its own, named by its environment variable secret_mount_path (OpenFaaS
// mounts them at /var/openfaas/secrets, which a process on the host cannot
// have: a command line that names that directory reads the function's
// own); a Go handler reads them with ReadSecret. An update reaches the
// functions that name the secret; a deletion removes it from them.
//
// A deployment's constraints and readOnlyRootFilesystem are kept and
// reported in its status, not enforced: a process on the host has the
// filesystem its user has.
//
// Scaling: a function has replicas (at first com.openfaas.scale.min, 1 by
// default), each running its concurrency (max_inflight, or the
// dfaas.concurrency label) at once; a scale request sets them, up to
// com.openfaas.scale.max (20 by default), and status reports them; 0
// scales it to zero, and its next call brings the minimum back. A node's
// measured capacity stays within replicas times concurrency calls per
// service time (MaxInFlight).
//
// Namespaces: the default one (Config.Namespace) always exists; the
// namespace API (/system/namespace/<name>: create, read, update, delete,
// as go-sdk's CreateNamespace and the like call it) makes others, with
// their labels and annotations, and a deployment or a secret in a new
// namespace makes it too. Deleting a namespace deletes its functions and
// secrets, as deleting a Kubernetes namespace does.
//
// Logs: the provider's logs API (/system/logs, through the gateway as
// faas-cli logs reads it) serves each function's last thousand lines,
// stamped, and follows new ones: a process function's stderr (when
// combine_output is false), its failures and, as the classic watchdog logs
// them, a line as each call forks and one with the bytes it wrote; a Go
// handler's Logf lines.
package local
