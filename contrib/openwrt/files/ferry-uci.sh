# shellcheck shell=sh
#
# ferry-uci.sh - /etc/config/ferry (UCI) rendered into relay.conf, the
# smarthost_auth file and the aliases file, for /etc/init.d/ferry.
#
# Plain shell functions, sourced after OpenWrt's /lib/functions.sh.  UCI
# is read only through config_load, config_get, config_get_bool and
# config_list_foreach, so tests feed the same calls a fake UCI.  relay.conf
# has no quoting, so a value that could change what a line means (a blank
# where one word belongs, '#', ',' inside a list item, any control
# character such as a newline) is refused with a message naming the
# option, and nothing is written; so is anything `ferry check-config`
# refuses.  Files are replaced only when their content changes: they
# live on flash.
#
#   ferry_uci_render DIR    0, or 1 with the reason on stderr;
#                           FERRY_RESTART=1 when a key that SIGHUP cannot
#                           change (listeners, socket, queue, user, DNS)
#                           did

FERRY_UCI_SECTION=${FERRY_UCI_SECTION:-main}
FERRY_BIN=${FERRY_BIN:-/usr/sbin/ferry}
FERRY_USER=${FERRY_USER:-ferry}
FERRY_GROUP=${FERRY_GROUP:-ferry}
# Flash, so mail survives a reboot (OpenWrt's /var is RAM); or RAM.
FERRY_QUEUE_FLASH=/etc/ferry/spool
FERRY_QUEUE_RAM=${FERRY_QUEUE_RAM:-/var/spool/ferry}
# What the running daemon keeps until a restart (see main.c, SIGHUP).
FERRY_RESTART_KEYS='listen_smtp|listen_submission|listen_smtps|local_socket|queue_dir|user|dns_servers|dnssec'
FERRY_RESTART=0

ferry_err() {
	echo "ferry: uci option ferry.$FERRY_UCI_SECTION.$1: $2" >&2
	return 1
}

# ferry_check KIND OPTION VALUE: may VALUE be written as a KIND?
#   word    one token: no blank, no '#', no control character
#   item    a word that is one list element: no ',' either
#   secret  the rest of a line: no control character, no leading blank
# Secrets are never echoed back in a message.
ferry_check() {
	case $1:$3 in
	secret:*[[:cntrl:]]*)
		ferry_err "$2" "control character (a newline?) in the value" ;;
	secret:[[:blank:]]*)
		ferry_err "$2" "must not start with a blank" ;;
	secret:*) return 0 ;;
	*:*[[:cntrl:]]*)
		ferry_err "$2" "control character (a newline?) in the value" ;;
	*:*[[:space:]#]*)
		ferry_err "$2" "'$3': one word, without blanks or '#'" ;;
	item:*,*)
		ferry_err "$2" "'$3': one list element, without ','" ;;
	*) return 0 ;;
	esac
}

# config_get and config_get_bool assign the variable they are given by
# name, which shellcheck cannot see: hence SC2154 below.

# ferry_get OPTION KIND [DEFAULT]: print the checked value (the check
# runs before $(...) could strip a trailing newline).
# shellcheck disable=SC2154
ferry_get() {
	config_get _fg_v "$FERRY_UCI_SECTION" "$1" "$3"
	[ -z "$_fg_v" ] || ferry_check "$2" "$1" "$_fg_v" || return 1
	printf '%s' "$_fg_v"
}

# ferry_short OPTION VALUE: VALUE fits the 255 bytes that auth.c takes
# for a smarthost_auth user or password (bytes, not characters: wc -c).
# The value is not shown.
ferry_short() {
	[ "$(printf '%s' "$2" | wc -c)" -le 255 ] ||
		ferry_err "$1" "longer than 255 bytes"
}

# ferry_bool OPTION DEFAULT: print 1 or 0.
# shellcheck disable=SC2154
ferry_bool() {
	config_get_bool _fb_v "$FERRY_UCI_SECTION" "$1" "$2"
	printf '%s' "$_fb_v"
}

ferry_list_item() {
	ferry_check item "$_fl_opt" "$1" || _fl_bad=1
	_fl_out="${_fl_out:+$_fl_out }$1"
}

# ferry_list OPTION: print the checked list, space separated, from
# `list` lines, or from one `option` holding blank-separated words.
# shellcheck disable=SC2154
ferry_list() {
	_fl_opt=$1
	_fl_out=
	_fl_bad=0
	config_list_foreach "$FERRY_UCI_SECTION" "$1" ferry_list_item
	if [ -z "$_fl_out" ] && [ "$_fl_bad" = 0 ]; then
		config_get _fl_v "$FERRY_UCI_SECTION" "$1"
		case $_fl_v in
		*[[:cntrl:]]*)
			ferry_err "$1" "control character (a newline?) in the value"
			return 1 ;;
		esac
		# '*:25' is a listener, not a glob.
		set -f
		for _fl_w in $_fl_v; do
			ferry_list_item "$_fl_w"
		done
		set +f
	fi
	[ "$_fl_bad" = 0 ] || return 1
	printf '%s' "$_fl_out"
}

# ferry_put FILE KEY VALUE: "key = value", left out when VALUE is empty
# (ferry's default then applies).
ferry_put() {
	[ -z "$3" ] || printf '%s = %s\n' "$2" "$3" >>"$1"
}

# ferry_put_always FILE KEY VALUE: "key = value", or "key =" (empty:
# a listener off).
ferry_put_always() {
	printf '%s =%s\n' "$2" "${3:+ $3}" >>"$1"
}

# ferry_replace NEW FILE: NEW becomes FILE if it differs; same: dropped.
ferry_replace() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		rm -f "$1"
		return 0
	fi
	mv -f "$1" "$2"
}

ferry_restart_lines() {
	[ -f "$1" ] && grep -E "^($FERRY_RESTART_KEYS) =" "$1"
}

ferry_uci_render() {
	_fr_dir=$1
	FERRY_RESTART=0
	config_load ferry || return 1

	# read and check everything before writing anything
	_fr_hostname=$(ferry_get hostname word) &&
	_fr_origin=$(ferry_get origin word) &&
	_fr_smarthost=$(ferry_get smarthost word) &&
	_fr_user=$(ferry_get smarthost_user word) &&
	_fr_password=$(ferry_get smarthost_password secret) &&
	_fr_smarthost_tls=$(ferry_get smarthost_tls word) &&
	_fr_outbound_tls=$(ferry_get outbound_tls word) &&
	_fr_inbound_tls=$(ferry_get inbound_tls word) &&
	_fr_tls_cert=$(ferry_get tls_cert word) &&
	_fr_tls_key=$(ferry_get tls_key word) &&
	_fr_auth_users=$(ferry_get auth_users word) &&
	_fr_size=$(ferry_get message_size_limit word) &&
	_fr_socket=$(ferry_get local_socket word) &&
	_fr_queue=$(ferry_get queue_dir word "$FERRY_QUEUE_FLASH") &&
	_fr_ram=$(ferry_bool queue_in_ram 0) &&
	_fr_dnssec=$(ferry_bool dnssec 1) &&
	_fr_smtp=$(ferry_list listen_smtp) &&
	_fr_submission=$(ferry_list listen_submission) &&
	_fr_smtps=$(ferry_list listen_smtps) &&
	_fr_nets=$(ferry_list relay_networks) &&
	_fr_dns=$(ferry_list dns_servers) &&
	_fr_root=$(ferry_list root_alias) || return 1
	if [ -n "$_fr_user" ] && [ -z "$_fr_password" ]; then
		ferry_err smarthost_password "empty, but smarthost_user is set"
		return 1
	fi
	ferry_short smarthost_user "$_fr_user" &&
		ferry_short smarthost_password "$_fr_password" || return 1
	# ferry makes the queue directory, not its parent, and /var/spool
	# is not there after a boot (/var is RAM).
	if [ "$_fr_ram" = 1 ]; then
		_fr_queue=$FERRY_QUEUE_RAM
		mkdir -p "${_fr_queue%/*}" || return 1
	fi

	mkdir -p "$_fr_dir" || return 1
	_fr_new=$_fr_dir/relay.conf.new
	rm -f "$_fr_new"
	{
		echo "# Written by /etc/init.d/ferry from /etc/config/ferry:"
		echo "# change that file (uci), not this one."
	} >"$_fr_new" || return 1
	ferry_put "$_fr_new" hostname "$_fr_hostname"
	ferry_put "$_fr_new" origin "$_fr_origin"
	# Listeners, the socket too, are always written: an empty one is
	# off.  The socket's path comes from /etc/config/ferry, as no
	# default could: config_get cannot tell '' from unset, and `uci set
	# ...=''` deletes the option.
	ferry_put_always "$_fr_new" listen_smtp "$_fr_smtp"
	ferry_put_always "$_fr_new" listen_submission "$_fr_submission"
	ferry_put_always "$_fr_new" listen_smtps "$_fr_smtps"
	ferry_put_always "$_fr_new" local_socket "$_fr_socket"
	ferry_put "$_fr_new" tls_cert "$_fr_tls_cert"
	ferry_put "$_fr_new" tls_key "$_fr_tls_key"
	ferry_put "$_fr_new" inbound_tls "$_fr_inbound_tls"
	ferry_put "$_fr_new" auth_users "$_fr_auth_users"
	ferry_put "$_fr_new" relay_networks "$_fr_nets"
	ferry_put "$_fr_new" message_size_limit "$_fr_size"
	ferry_put "$_fr_new" queue_dir "$_fr_queue"
	ferry_put "$_fr_new" smarthost "$_fr_smarthost"
	ferry_put "$_fr_new" smarthost_tls "$_fr_smarthost_tls"
	[ -z "$_fr_user" ] ||
		ferry_put "$_fr_new" smarthost_auth "$_fr_dir/smarthost_auth"
	ferry_put "$_fr_new" outbound_tls "$_fr_outbound_tls"
	ferry_put "$_fr_new" dns_servers "$_fr_dns"
	[ "$_fr_dnssec" = 1 ] || ferry_put "$_fr_new" dnssec no
	[ -z "$_fr_root" ] || ferry_put "$_fr_new" aliases "$_fr_dir/aliases"
	ferry_put "$_fr_new" user "$FERRY_USER"
	ferry_put "$_fr_new" log syslog
	# printf, not echo: dash's echo would make a "\n" in an item a
	# second line, another alias.
	rm -f "$_fr_dir/aliases.new"
	if [ -n "$_fr_root" ]; then
		printf 'root: %s\n' "$(printf '%s' "$_fr_root" |
		    sed 's/ /, /g')" >"$_fr_dir/aliases.new" || return 1
	fi
	# ferry's parser has the last word (a misspelt level, a /33, an
	# alias to a /file): a relay.conf or aliases file it refuses would
	# make every sendmail exit 78 unqueued and the next start fail,
	# while SIGHUP keeps the running settings.  No local_socket for the
	# check: newaliases would have the running daemon reload before the
	# new files are in place.
	if ! "$FERRY_BIN" -c "$_fr_new" check-config >/dev/null ||
	    { [ -n "$_fr_root" ] && ! FERRY_ALIASES=$_fr_dir/aliases.new \
	    FERRY_LOCAL_SOCKET='' "$FERRY_BIN" -c "$_fr_new" newaliases; }; then
		rm -f "$_fr_new" "$_fr_dir/aliases.new"
		echo "ferry: /etc/config/ferry not applied" >&2
		return 1
	fi

	# The password file: 0600 and the daemon's, which reads it again on
	# SIGHUP after dropping root.  Made private before the secret goes in.
	if [ -n "$_fr_user" ]; then
		rm -f "$_fr_dir/smarthost_auth.new"
		(umask 077 && printf '%s %s\n' "$_fr_user" "$_fr_password" \
		    >"$_fr_dir/smarthost_auth.new") || return 1
		chmod 0600 "$_fr_dir/smarthost_auth.new" &&
		    chown "$FERRY_USER:$FERRY_GROUP" \
		    "$_fr_dir/smarthost_auth.new" &&
		    ferry_replace "$_fr_dir/smarthost_auth.new" \
		    "$_fr_dir/smarthost_auth" || return 1
	else
		rm -f "$_fr_dir/smarthost_auth"
	fi
	if [ -n "$_fr_root" ]; then
		chmod 0644 "$_fr_dir/aliases.new" &&
		    ferry_replace "$_fr_dir/aliases.new" "$_fr_dir/aliases" ||
		    return 1
	else
		rm -f "$_fr_dir/aliases"
	fi

	if [ "$(ferry_restart_lines "$_fr_new")" != \
	    "$(ferry_restart_lines "$_fr_dir/relay.conf")" ]; then
		# read by /etc/init.d/ferry
		# shellcheck disable=SC2034
		FERRY_RESTART=1
	fi
	chmod 0644 "$_fr_new" && ferry_replace "$_fr_new" "$_fr_dir/relay.conf"
}
