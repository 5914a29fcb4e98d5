"""The confirmation mail's wording in English, German, French and Italian, and number/date formats.

Plain dicts, one per language, with the same keys. Plural forms are ``*_one`` / ``*_other`` keys
(French treats 0 as singular). Placeholders are ``{n}``, ``{route}``, ``{uid}``, ``{mailboxes}``,
``{issues}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from migrate.errors import UsageError

LANGS = ("en", "de", "fr", "it")

EN: dict[str, str] = {
    "subject_ok": "Mailbox import complete: {route}",
    "subject_partial_one": "Mailbox import finished with {n} failed message: {route}",
    "subject_partial_other": "Mailbox import finished with {n} failed messages: {route}",
    "subject_problems": "Mailbox import finished with problems: {route}",
    "subject_interrupted": "Mailbox import interrupted: {route}",
    "subject_dry_run": "Mailbox import dry run finished: {route}",
    "headline_ok": "Your mailbox import is complete.",
    "headline_partial_one": "Your mailbox import has finished, but {n} message could not be copied.",
    "headline_partial_other": "Your mailbox import has finished, but {n} messages could not be copied.",
    "headline_problems": "Your mailbox import has finished, but not everything could be imported. "
                         "Please check the details below.",
    "headline_interrupted": "Your mailbox import was interrupted before it could finish. Messages that were "
                            "already copied are safe, and running the import again continues where it stopped.",
    "headline_dry_run": "This was a dry run: nothing was copied. The numbers below show what a real import would do.",
    "label_from": "From",
    "label_to": "To",
    "label_started": "Started",
    "label_finished": "Finished",
    "label_duration": "Duration",
    "label_status": "Result",
    "label_job": "Job ID",
    "label_error": "Error",
    "label_restored": "Restored",
    "restored_text": "{n} messages had disappeared from the new mailbox since an earlier import and were copied again.",
    "label_hint": "What to do",
    "col_folder": "Folder",
    "col_copied": "Copied",
    "col_skipped": "Already present",
    "col_failed": "Failed",
    "total": "Total",
    "skipped_note": "“Already present” messages were already in the target mailbox and were not copied twice.",
    "not_imported": "not imported",
    "no_folders": "No folders were processed.",
    "failures_title": "Messages that could not be copied",
    "failures_more": "… and {n} more. The complete list is in the job report.",
    "failure_uid": "UID {uid}",
    "rerun_title": "Running the import again",
    "rerun_text": "Run this command; messages that are already in the target are skipped:",
    "footer": "This message was sent automatically by mailmigrate. Please do not reply to it.",
    "status_ok": "complete",
    "status_partial": "finished with errors",
    "status_failed": "failed",
    "status_interrupted": "interrupted",
    "status_dry-run": "dry run (nothing copied)",
    "batch_subject_ok": "Batch mailbox import complete: {mailboxes}",
    "batch_subject_issues": "Batch mailbox import finished: {mailboxes}, {issues}",
    "batch_mailboxes_one": "{n} mailbox",
    "batch_mailboxes_other": "{n} mailboxes",
    "batch_with_failures_one": "{n} with failed messages",
    "batch_with_failures_other": "{n} with failed messages",
    "batch_interrupted_one": "{n} interrupted",
    "batch_interrupted_other": "{n} interrupted",
    "batch_headline_ok": "All mailboxes in this batch were imported.",
    "batch_headline_issues": "The batch has finished, but not every mailbox was imported completely. "
                             "Running the batch again retries only what is missing.",
    "col_mailbox": "Mailbox",
    "col_status": "Result",
    "batch_errors_title": "Errors",
    # A full target (the job stopped: OverQuota), in plain words.
    "subject_full": "Mailbox import stopped, the new mailbox is full: {route}",
    "headline_full_one": "Your new mailbox is full, so the import stopped: {n} message could not be copied.",
    "headline_full_other": "Your new mailbox is full, so the import stopped: {n} messages could not be copied.",
    "full_error": "The new mailbox is full: there is no room for more messages.",
    "full_hint": "Make room in the new mailbox (delete messages you no longer need, empty the trash) or ask your "
                 "provider for more storage, then run the import again: it continues where it stopped and copies "
                 "nothing twice.",
    "status_full": "stopped (the new mailbox is full)",
    "reason_full": "the new mailbox is full",
    # Folder notes under a row of the table.
    "note_unchanged": "unchanged",
    "note_excluded": "left out (--exclude)",
    "note_not_included": "left out (not in --include)",
    "note_gmail_container": "Gmail label container",
    "note_gmail_view": "Gmail view (its messages are in other folders)",
    "note_stopped": "stopped: the import was interrupted",
    "note_not_started": "not started: the import stopped",
    "note_full_not_started": "not started: the new mailbox is full",
    "note_folder_failed": "folder failed",
    "note_not_created": "folder not created",
}

DE: dict[str, str] = {
    "subject_ok": "Postfach-Import abgeschlossen: {route}",
    "subject_partial_one": "Postfach-Import abgeschlossen, {n} Nachricht fehlgeschlagen: {route}",
    "subject_partial_other": "Postfach-Import abgeschlossen, {n} Nachrichten fehlgeschlagen: {route}",
    "subject_problems": "Postfach-Import mit Problemen abgeschlossen: {route}",
    "subject_interrupted": "Postfach-Import unterbrochen: {route}",
    "subject_dry_run": "Testlauf des Postfach-Imports abgeschlossen: {route}",
    "headline_ok": "Ihr Postfach-Import ist abgeschlossen.",
    "headline_partial_one": "Ihr Postfach-Import ist abgeschlossen, aber {n} Nachricht konnte nicht kopiert werden.",
    "headline_partial_other": "Ihr Postfach-Import ist abgeschlossen, aber {n} Nachrichten konnten nicht kopiert "
                              "werden.",
    "headline_problems": "Ihr Postfach-Import ist abgeschlossen, aber nicht alles konnte übernommen werden. "
                         "Bitte prüfen Sie die Details unten.",
    "headline_interrupted": "Ihr Postfach-Import wurde unterbrochen, bevor er abgeschlossen war. Bereits kopierte "
                            "Nachrichten bleiben erhalten; ein erneuter Start setzt dort fort, wo der Import "
                            "aufgehört hat.",
    "headline_dry_run": "Dies war ein Testlauf: Es wurde nichts kopiert. Die Zahlen unten zeigen, was ein echter "
                        "Import tun würde.",
    "label_from": "Von",
    "label_to": "Nach",
    "label_started": "Beginn",
    "label_finished": "Ende",
    "label_duration": "Dauer",
    "label_status": "Ergebnis",
    "label_job": "Auftrags-ID",
    "label_error": "Fehler",
    "label_restored": "Wiederhergestellt",
    "restored_text": "{n} Nachrichten waren seit einem früheren Import aus dem neuen Postfach verschwunden und wurden erneut kopiert.",
    "label_hint": "Was ist zu tun",
    "col_folder": "Ordner",
    "col_copied": "Kopiert",
    "col_skipped": "Bereits vorhanden",
    "col_failed": "Fehlgeschlagen",
    "total": "Gesamt",
    "skipped_note": "„Bereits vorhanden“ heißt: Diese Nachrichten waren schon im Zielpostfach und wurden nicht "
                    "doppelt kopiert.",
    "not_imported": "nicht importiert",
    "no_folders": "Es wurden keine Ordner verarbeitet.",
    "failures_title": "Nachrichten, die nicht kopiert werden konnten",
    "failures_more": "… und {n} weitere. Die vollständige Liste steht im Auftragsbericht.",
    "failure_uid": "UID {uid}",
    "rerun_title": "Import erneut ausführen",
    "rerun_text": "Führen Sie diesen Befehl aus; Nachrichten, die schon im Ziel sind, werden übersprungen:",
    "footer": "Diese Nachricht wurde automatisch von mailmigrate versendet. Bitte antworten Sie nicht darauf.",
    "status_ok": "abgeschlossen",
    "status_partial": "mit Fehlern abgeschlossen",
    "status_failed": "fehlgeschlagen",
    "status_interrupted": "unterbrochen",
    "status_dry-run": "Testlauf (nichts kopiert)",
    "batch_subject_ok": "Sammel-Import der Postfächer abgeschlossen: {mailboxes}",
    "batch_subject_issues": "Sammel-Import der Postfächer beendet: {mailboxes}, {issues}",
    "batch_mailboxes_one": "{n} Postfach",
    "batch_mailboxes_other": "{n} Postfächer",
    "batch_with_failures_one": "{n} mit fehlgeschlagenen Nachrichten",
    "batch_with_failures_other": "{n} mit fehlgeschlagenen Nachrichten",
    "batch_interrupted_one": "{n} unterbrochen",
    "batch_interrupted_other": "{n} unterbrochen",
    "batch_headline_ok": "Alle Postfächer dieses Sammel-Imports wurden importiert.",
    "batch_headline_issues": "Der Sammel-Import ist beendet, aber nicht jedes Postfach wurde vollständig "
                             "importiert. Ein erneuter Start wiederholt nur, was noch fehlt.",
    "col_mailbox": "Postfach",
    "col_status": "Ergebnis",
    "batch_errors_title": "Fehler",
    "subject_full": "Postfach-Import angehalten, das neue Postfach ist voll: {route}",
    "headline_full_one": "Ihr neues Postfach ist voll, deshalb wurde der Import angehalten: {n} Nachricht konnte "
                         "nicht kopiert werden.",
    "headline_full_other": "Ihr neues Postfach ist voll, deshalb wurde der Import angehalten: {n} Nachrichten "
                           "konnten nicht kopiert werden.",
    "full_error": "Das neue Postfach ist voll: Es hat keinen Platz für weitere Nachrichten.",
    "full_hint": "Schaffen Sie Platz im neuen Postfach (nicht mehr benötigte Nachrichten löschen, den Papierkorb "
                 "leeren) oder bitten Sie Ihren Anbieter um mehr Speicherplatz, und starten Sie den Import dann "
                 "erneut: Er setzt dort fort, wo er aufgehört hat, und kopiert nichts doppelt.",
    "status_full": "angehalten (das neue Postfach ist voll)",
    "reason_full": "das neue Postfach ist voll",
    "note_unchanged": "unverändert",
    "note_excluded": "ausgelassen (--exclude)",
    "note_not_included": "ausgelassen (nicht in --include)",
    "note_gmail_container": "Gmail-Label-Ordner",
    "note_gmail_view": "Gmail-Ansicht (die Nachrichten liegen in anderen Ordnern)",
    "note_stopped": "angehalten: der Import wurde unterbrochen",
    "note_not_started": "nicht begonnen: der Import wurde angehalten",
    "note_full_not_started": "nicht begonnen: das neue Postfach ist voll",
    "note_folder_failed": "Ordner fehlgeschlagen",
    "note_not_created": "Ordner nicht angelegt",
}

# French typography: written with plain spaces here, turned into no-break spaces by _french_spacing.
FR: dict[str, str] = {
    "subject_ok": "Importation de la boîte aux lettres terminée : {route}",
    "subject_partial_one": "Importation de la boîte aux lettres terminée avec {n} message en échec : {route}",
    "subject_partial_other": "Importation de la boîte aux lettres terminée avec {n} messages en échec : {route}",
    "subject_problems": "Importation de la boîte aux lettres terminée avec des problèmes : {route}",
    "subject_interrupted": "Importation de la boîte aux lettres interrompue : {route}",
    "subject_dry_run": "Simulation d’importation de la boîte aux lettres terminée : {route}",
    "headline_ok": "L’importation de votre boîte aux lettres est terminée.",
    "headline_partial_one": "L’importation de votre boîte aux lettres est terminée, mais {n} message n’a pas pu "
                            "être copié.",
    "headline_partial_other": "L’importation de votre boîte aux lettres est terminée, mais {n} messages n’ont pas "
                              "pu être copiés.",
    "headline_problems": "L’importation de votre boîte aux lettres est terminée, mais tout n’a pas pu être importé. "
                         "Veuillez consulter les détails ci-dessous.",
    "headline_interrupted": "L’importation de votre boîte aux lettres a été interrompue avant la fin. Les messages "
                            "déjà copiés sont conservés ; si vous relancez l’importation, elle reprendra là où "
                            "elle s’est arrêtée.",
    "headline_dry_run": "Il s’agissait d’une simulation : aucun message n’a été copié. Les chiffres ci-dessous "
                        "indiquent ce que ferait une véritable importation.",
    "label_from": "De",
    "label_to": "Vers",
    "label_started": "Début",
    "label_finished": "Fin",
    "label_duration": "Durée",
    "label_status": "Résultat",
    "label_job": "Identifiant de la tâche",
    "label_error": "Erreur",
    "label_restored": "Restaurés",
    "restored_text": "{n} messages avaient disparu de la nouvelle boîte depuis une importation précédente et ont été copiés à nouveau.",
    "label_hint": "Que faire",
    "col_folder": "Dossier",
    "col_copied": "Copiés",
    "col_skipped": "Déjà présents",
    "col_failed": "En échec",
    "total": "Total",
    "skipped_note": "Les messages « déjà présents » se trouvaient déjà dans la boîte de destination et n’ont pas "
                    "été copiés une seconde fois.",
    "not_imported": "non importé",
    "no_folders": "Aucun dossier n’a été traité.",
    "failures_title": "Messages qui n’ont pas pu être copiés",
    "failures_more": "… et {n} autres. La liste complète figure dans le rapport de la tâche.",
    "failure_uid": "UID {uid}",
    "rerun_title": "Relancer l’importation",
    "rerun_text": "Exécutez cette commande ; les messages déjà présents dans la destination seront ignorés :",
    "footer": "Ce message a été envoyé automatiquement par mailmigrate. Merci de ne pas y répondre.",
    "status_ok": "terminée",
    "status_partial": "terminée avec des erreurs",
    "status_failed": "échouée",
    "status_interrupted": "interrompue",
    "status_dry-run": "simulation (aucun message copié)",
    "batch_subject_ok": "Importation groupée des boîtes aux lettres terminée : {mailboxes}",
    "batch_subject_issues": "Importation groupée des boîtes aux lettres terminée : {mailboxes}, {issues}",
    "batch_mailboxes_one": "{n} boîte aux lettres",
    "batch_mailboxes_other": "{n} boîtes aux lettres",
    "batch_with_failures_one": "{n} avec des messages en échec",
    "batch_with_failures_other": "{n} avec des messages en échec",
    "batch_interrupted_one": "{n} interrompue",
    "batch_interrupted_other": "{n} interrompues",
    "batch_headline_ok": "Toutes les boîtes aux lettres de ce lot ont été importées.",
    "batch_headline_issues": "Le lot est terminé, mais toutes les boîtes aux lettres n’ont pas été importées "
                             "entièrement. En relançant le lot, seul ce qui manque sera repris.",
    "col_mailbox": "Boîte aux lettres",
    "col_status": "Résultat",
    "batch_errors_title": "Erreurs",
    "subject_full": "Importation de la boîte aux lettres arrêtée, la nouvelle boîte est pleine : {route}",
    "headline_full_one": "Votre nouvelle boîte aux lettres est pleine, l’importation s’est donc arrêtée : {n} "
                         "message n’a pas pu être copié.",
    "headline_full_other": "Votre nouvelle boîte aux lettres est pleine, l’importation s’est donc arrêtée : {n} "
                           "messages n’ont pas pu être copiés.",
    "full_error": "La nouvelle boîte aux lettres est pleine : il n’y a plus de place pour d’autres messages.",
    "full_hint": "Libérez de la place dans la nouvelle boîte aux lettres (supprimez les messages dont vous n’avez "
                 "plus besoin, videz la corbeille) ou demandez plus d’espace à votre fournisseur, puis relancez "
                 "l’importation : elle reprend là où elle s’est arrêtée et ne copie rien deux fois.",
    "status_full": "arrêtée (la nouvelle boîte aux lettres est pleine)",
    "reason_full": "la nouvelle boîte aux lettres est pleine",
    "note_unchanged": "inchangé",
    "note_excluded": "laissé de côté (--exclude)",
    "note_not_included": "laissé de côté (absent de --include)",
    "note_gmail_container": "dossier de libellés Gmail",
    "note_gmail_view": "vue Gmail (ses messages sont dans d’autres dossiers)",
    "note_stopped": "arrêté : l’importation a été interrompue",
    "note_not_started": "non commencé : l’importation s’est arrêtée",
    "note_full_not_started": "non commencé : la nouvelle boîte aux lettres est pleine",
    "note_folder_failed": "échec du dossier",
    "note_not_created": "dossier non créé",
}

IT: dict[str, str] = {
    "subject_ok": "Importazione della casella di posta completata: {route}",
    "subject_partial_one": "Importazione della casella di posta terminata con {n} messaggio non riuscito: {route}",
    "subject_partial_other": "Importazione della casella di posta terminata con {n} messaggi non riusciti: {route}",
    "subject_problems": "Importazione della casella di posta terminata con problemi: {route}",
    "subject_interrupted": "Importazione della casella di posta interrotta: {route}",
    "subject_dry_run": "Simulazione dell’importazione della casella di posta completata: {route}",
    "headline_ok": "L’importazione della casella di posta è stata completata.",
    "headline_partial_one": "L’importazione della casella di posta è terminata, ma {n} messaggio non è stato copiato.",
    "headline_partial_other": "L’importazione della casella di posta è terminata, ma {n} messaggi non sono stati "
                              "copiati.",
    "headline_problems": "L’importazione della casella di posta è terminata, ma non è stato possibile importare "
                         "tutto. Si prega di controllare i dettagli qui sotto.",
    "headline_interrupted": "L’importazione della casella di posta è stata interrotta prima del termine. I messaggi "
                            "già copiati sono al sicuro e, rilanciando l’importazione, si riprenderà dal punto in "
                            "cui si è fermata.",
    "headline_dry_run": "Questa era una simulazione: non è stato copiato nulla. I numeri qui sotto mostrano che cosa "
                        "farebbe un’importazione reale.",
    "label_from": "Da",
    "label_to": "A",
    "label_started": "Inizio",
    "label_finished": "Fine",
    "label_duration": "Durata",
    "label_status": "Esito",
    "label_job": "ID attività",
    "label_error": "Errore",
    "label_restored": "Ripristinati",
    "restored_text": "{n} messaggi erano scomparsi dalla nuova casella dopo un’importazione precedente e sono stati copiati di nuovo.",
    "label_hint": "Cosa fare",
    "col_folder": "Cartella",
    "col_copied": "Copiati",
    "col_skipped": "Già presenti",
    "col_failed": "Non riusciti",
    "total": "Totale",
    "skipped_note": "I messaggi «già presenti» erano già nella casella di destinazione e non sono stati copiati "
                    "una seconda volta.",
    "not_imported": "non importata",
    "no_folders": "Non è stata elaborata nessuna cartella.",
    "failures_title": "Messaggi che non è stato possibile copiare",
    "failures_more": "… e altri {n}. L’elenco completo si trova nel rapporto dell’attività.",
    "failure_uid": "UID {uid}",
    "rerun_title": "Rilanciare l’importazione",
    "rerun_text": "Eseguire questo comando; i messaggi già presenti nella destinazione verranno saltati:",
    "footer": "Questo messaggio è stato inviato automaticamente da mailmigrate. Si prega di non rispondere.",
    "status_ok": "completata",
    "status_partial": "completata con errori",
    "status_failed": "non riuscita",
    "status_interrupted": "interrotta",
    "status_dry-run": "simulazione (nessun messaggio copiato)",
    "batch_subject_ok": "Importazione multipla delle caselle di posta completata: {mailboxes}",
    "batch_subject_issues": "Importazione multipla delle caselle di posta terminata: {mailboxes}, {issues}",
    "batch_mailboxes_one": "{n} casella",
    "batch_mailboxes_other": "{n} caselle",
    "batch_with_failures_one": "{n} con messaggi non riusciti",
    "batch_with_failures_other": "{n} con messaggi non riusciti",
    "batch_interrupted_one": "{n} interrotta",
    "batch_interrupted_other": "{n} interrotte",
    "batch_headline_ok": "Tutte le caselle di posta di questo gruppo sono state importate.",
    "batch_headline_issues": "Il gruppo è terminato, ma non tutte le caselle di posta sono state importate "
                             "completamente. Rilanciando il gruppo si riprende solo ciò che manca.",
    "col_mailbox": "Casella di posta",
    "col_status": "Esito",
    "batch_errors_title": "Errori",
    "subject_full": "Importazione della casella di posta interrotta, la nuova casella è piena: {route}",
    "headline_full_one": "La nuova casella di posta è piena, quindi l’importazione si è fermata: {n} messaggio "
                         "non è stato copiato.",
    "headline_full_other": "La nuova casella di posta è piena, quindi l’importazione si è fermata: {n} messaggi "
                           "non sono stati copiati.",
    "full_error": "La nuova casella di posta è piena: non c’è più spazio per altri messaggi.",
    "full_hint": "Liberare spazio nella nuova casella (eliminare i messaggi non più necessari, svuotare il cestino) "
                 "o chiedere più spazio al proprio fornitore, poi rilanciare l’importazione: riprende da dove si "
                 "è fermata e non copia nulla due volte.",
    "status_full": "interrotta (la nuova casella di posta è piena)",
    "reason_full": "la nuova casella di posta è piena",
    "note_unchanged": "invariata",
    "note_excluded": "esclusa (--exclude)",
    "note_not_included": "esclusa (non in --include)",
    "note_gmail_container": "contenitore di etichette Gmail",
    "note_gmail_view": "vista di Gmail (i messaggi sono in altre cartelle)",
    "note_stopped": "fermata: l’importazione è stata interrotta",
    "note_not_started": "non iniziata: l’importazione si è fermata",
    "note_full_not_started": "non iniziata: la nuova casella di posta è piena",
    "note_folder_failed": "cartella non riuscita",
    "note_not_created": "cartella non creata",
}

NBSP = "\u00a0"


def _french_spacing(d: dict[str, str]) -> dict[str, str]:
    # No-break space before ":" ";" and inside « », so clients never wrap a lone colon.
    out = {}
    for k, v in d.items():
        for a, b in ((" :", NBSP + ":"), (" ;", NBSP + ";"), ("« ", "«" + NBSP), (" »", NBSP + "»")):
            v = v.replace(a, b)
        out[k] = v
    return out


STRINGS: dict[str, dict[str, str]] = {"en": EN, "de": DE, "fr": _french_spacing(FR), "it": IT}

# thousands separator, decimal mark, date pattern, month names, duration units, size units
FORMATS: dict[str, dict[str, object]] = {
    "en": {"thousands": ",", "decimal": ".", "date": "{d} {month} {y}, {hm} UTC",
           "months": ("January", "February", "March", "April", "May", "June", "July", "August",
                      "September", "October", "November", "December"),
           "units": ("h", "min", "s"), "sizes": ("B", "kB", "MB", "GB", "TB"), "quote": "“{}”"},
    "de": {"thousands": ".", "decimal": ",", "date": "{d}. {month} {y}, {hm} UTC",
           "months": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
                      "September", "Oktober", "November", "Dezember"),
           "units": ("Std.", "Min.", "Sek."), "sizes": ("B", "kB", "MB", "GB", "TB"), "quote": "„{}“"},
    "fr": {"thousands": NBSP, "decimal": ",", "date": "{d} {month} {y} à {hm} UTC",
           "months": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                      "septembre", "octobre", "novembre", "décembre"),
           "units": ("h", "min", "s"), "sizes": ("o", "ko", "Mo", "Go", "To"), "quote": f"«{NBSP}{{}}{NBSP}»"},
    "it": {"thousands": ".", "decimal": ",", "date": "{d} {month} {y}, ore {hm} UTC",
           "months": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
                      "settembre", "ottobre", "novembre", "dicembre"),
           "units": ("h", "min", "s"), "sizes": ("B", "kB", "MB", "GB", "TB"), "quote": "«{}»"},
}


def check_lang(lang: str) -> str:
    norm = (lang or "en").strip().lower()
    if norm not in STRINGS:
        raise UsageError(f"unknown mail language {lang!r}", hint=f"use one of: {', '.join(LANGS)}")
    return norm


def strings(lang: str) -> dict[str, str]:
    return STRINGS[check_lang(lang)]


def _fmt(lang: str) -> dict[str, object]:
    return FORMATS[check_lang(lang)]


def plural_key(lang: str, key: str, n: int) -> str:
    one = n in (0, 1) if check_lang(lang) == "fr" else n == 1
    return f"{key}_{'one' if one else 'other'}"


def tr_n(lang: str, key: str, n: int) -> str:
    """The singular or plural text for ``key`` with ``{n}`` filled in (formatted per language)."""
    return strings(lang)[plural_key(lang, key, n)].format(n=fmt_int(n, lang))


def fmt_int(n: int, lang: str) -> str:
    return f"{n:,}".replace(",", str(_fmt(lang)["thousands"]))


def fmt_size(size: int, lang: str) -> str:
    f = _fmt(lang)
    units = f["sizes"]
    assert isinstance(units, tuple)
    value, i = float(size), 0
    while value >= 1000 and i < len(units) - 1:
        value, i = value / 1000, i + 1
    num = str(size) if i == 0 else f"{value:.1f}".replace(".", str(f["decimal"]))
    return f"{num}{NBSP}{units[i]}"


def fmt_duration(seconds: float, lang: str) -> str:
    h_u, m_u, s_u = _fmt(lang)["units"]  # type: ignore[misc]
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}{NBSP}{h_u} {m}{NBSP}{m_u}"
    if m:
        return f"{m}{NBSP}{m_u} {s}{NBSP}{s_u}"
    return f"{s}{NBSP}{s_u}"


def fmt_datetime(dt: datetime | None, lang: str) -> str:
    if dt is None:
        return "–"
    f = _fmt(lang)
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)  # naive: assume UTC
    months = f["months"]
    assert isinstance(months, tuple)
    return str(f["date"]).format(d=dt.day, month=months[dt.month - 1], y=dt.year, hm=dt.strftime("%H:%M"))


def colon(lang: str) -> str:
    """":" as written after a label (French puts a no-break space before it)."""
    return NBSP + ":" if check_lang(lang) == "fr" else ":"


def quote(text: str, lang: str) -> str:
    return str(_fmt(lang)["quote"]).format(text)
