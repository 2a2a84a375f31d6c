# Run in the image's root filesystem (images.py, postgres_recipe) on Debian's minbase.
# As the official postgres image's Dockerfile does: the postgres user and group are 999, made
# before the package so it keeps them; no cluster is made at install (the entrypoint runs initdb
# in PGDATA); the server listens on every address by default.
groupadd --system --gid 999 postgres
useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/floe.conf
apt-get update -q
apt-get install -y -q --no-install-recommends postgresql-15
apt-get clean
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/15/postgresql.conf.sample
grep -q "^listen_addresses = '\*'" /usr/share/postgresql/15/postgresql.conf.sample
mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql
chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
# The socket and data directories are open to every user, as in the official image (the server
# itself runs as postgres, 999: initdb needs its user in /etc/passwd).
chmod 3777 /var/run/postgresql
chmod 1777 /var/lib/postgresql/data
