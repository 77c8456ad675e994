"""A per-job SSH key for MPI ranks, the way the MPI Operator makes one.

mpirun starts the remote ranks over ssh, so the launcher needs a private key that every worker's
sshd accepts. Like the MPI Operator (kubeflow/mpi-operator ``pkg/controller/mpi_job_controller.go``,
``newSSHAuthSecret``), each job gets its own ECDSA P-521 key pair in a ``kubernetes.io/ssh-auth``
Secret that the job owns, so the key is never shared between jobs or users and goes when the job
does. The key is made here, by the service, and handed to the pure builders in ``BuildContext``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class SshAuth:
    """One job's key pair.

    Attributes:
        private_key: PEM (``EC PRIVATE KEY``), the Secret's ``ssh-privatekey``; never in a repr.
        public_key: The OpenSSH ``authorized_keys`` line.
    """

    private_key: str = field(repr=False)
    public_key: str


def new_ssh_auth() -> SshAuth:
    """A fresh ECDSA P-521 key pair (what the MPI Operator generates)."""
    key = ec.generate_private_key(ec.SECP521R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return SshAuth(private_key=private, public_key=public + "\n")
