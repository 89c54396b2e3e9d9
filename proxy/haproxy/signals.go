package haproxy

import "syscall"

// The master process reloads on SIGUSR2 and stops on SIGTERM.
const (
	syscallSIGUSR2 = syscall.SIGUSR2
	syscallSIGTERM = syscall.SIGTERM
)
