"""The pages' texts in English, German, French and Italian, and how a request picks its language.

Every text is one row ``key: (en, de, fr, it)``, so a language can never miss a key. Placeholders
are ``{name}`` (``str.format``). The provider hints here are written for the web form (the presets'
own hints speak of command-line options) and are checked to cover every preset."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from .app import LANGS

LANG_COOKIE = "mm_lang"
NATIVE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "it": "Italiano"}

_TEXTS: dict[str, tuple[str, str, str, str]] = {
    # --- frame ---------------------------------------------------------------------------------
    "brand": ("Mail import", "E-Mail-Umzug", "Transfert de messagerie", "Trasferimento della posta"),
    "skip_to_content": ("Skip to content", "Zum Inhalt springen", "Aller au contenu", "Vai al contenuto"),
    "nav_label": ("Main menu", "Hauptmenü", "Menu principal", "Menu principale"),
    "nav_import": ("Import", "Importieren", "Importer", "Importa"),
    "nav_batch": ("Several mailboxes", "Mehrere Postfächer", "Plusieurs boîtes", "Più caselle"),
    "nav_imports": ("My imports", "Meine Importe", "Mes importations", "Le mie importazioni"),
    "signed_in_as": ("Signed in as {email}", "Angemeldet als {email}", "Connecté en tant que {email}",
                     "Accesso effettuato come {email}"),
    "sign_out": ("Sign out", "Abmelden", "Se déconnecter", "Esci"),
    "language": ("Language", "Sprache", "Langue", "Lingua"),
    # --- sign-in -------------------------------------------------------------------------------
    "signin_title": ("Sign in", "Anmelden", "Connexion", "Accedi"),
    "signin_intro": (
        "Sign in with the address and password of your mailbox with us. Then you can bring over the "
        "mail of your old mailbox.",
        "Melden Sie sich mit der Adresse und dem Passwort Ihres Postfachs bei uns an. Danach können Sie "
        "die E-Mails Ihres alten Postfachs übernehmen.",
        "Connectez-vous avec l'adresse et le mot de passe de votre boîte aux lettres chez nous. Vous "
        "pourrez ensuite y transférer les messages de votre ancienne boîte.",
        "Accedi con l'indirizzo e la password della tua casella di posta presso di noi. Poi potrai "
        "trasferire la posta della tua vecchia casella."),
    "field_email": ("E-mail address", "E-Mail-Adresse", "Adresse e-mail", "Indirizzo e-mail"),
    "field_password": ("Password", "Passwort", "Mot de passe", "Password"),
    "signin_button": ("Sign in", "Anmelden", "Se connecter", "Accedi"),
    "err_signin_wrong": (
        "Wrong address or password. Check both and try again.",
        "Adresse oder Passwort falsch. Prüfen Sie beides und versuchen Sie es erneut.",
        "Adresse ou mot de passe incorrect. Vérifiez les deux et réessayez.",
        "Indirizzo o password errati. Controlla entrambi e riprova."),
    "err_rate_limited": (
        "Too many sign-in attempts. Wait a minute, then try again.",
        "Zu viele Anmeldeversuche. Warten Sie eine Minute und versuchen Sie es dann erneut.",
        "Trop de tentatives de connexion. Attendez une minute, puis réessayez.",
        "Troppi tentativi di accesso. Attendi un minuto e riprova."),
    "err_server_unreachable": (
        "The mail server cannot be reached right now. Try again in a few minutes.",
        "Der Mailserver ist gerade nicht erreichbar. Versuchen Sie es in ein paar Minuten erneut.",
        "Le serveur de messagerie est injoignable pour le moment. Réessayez dans quelques minutes.",
        "Il server di posta non è raggiungibile al momento. Riprova tra qualche minuto."),
    "err_give_email_password": (
        "Give your e-mail address and your password.",
        "Geben Sie Ihre E-Mail-Adresse und Ihr Passwort ein.",
        "Indiquez votre adresse e-mail et votre mot de passe.",
        "Inserisci il tuo indirizzo e-mail e la tua password."),
    "err_session_ended": (
        "Your session has ended: sign in again.",
        "Ihre Sitzung ist abgelaufen: Melden Sie sich erneut an.",
        "Votre session a expiré : reconnectez-vous.",
        "La tua sessione è scaduta: accedi di nuovo."),
    # --- the import form -----------------------------------------------------------------------
    "import_title": ("Bring your old mail over", "Alte E-Mails übernehmen", "Transférer vos anciens messages",
                     "Trasferisci la tua vecchia posta"),
    "import_intro": (
        "We copy every folder and message of your old mailbox into your mailbox here; nothing is deleted "
        "in the old one. Once the import has started you can close this window: you get a confirmation "
        "mail with the counts.",
        "Wir kopieren alle Ordner und Nachrichten Ihres alten Postfachs in Ihr Postfach bei uns; im alten "
        "wird nichts gelöscht. Sobald der Import läuft, können Sie dieses Fenster schließen: Sie erhalten "
        "eine Bestätigung per E-Mail mit den Zahlen.",
        "Nous copions tous les dossiers et messages de votre ancienne boîte dans votre boîte chez nous ; "
        "rien n'est supprimé dans l'ancienne. Une fois l'importation lancée, vous pouvez fermer cette "
        "fenêtre : vous recevrez un e-mail de confirmation avec les chiffres.",
        "Copiamo tutte le cartelle e i messaggi della tua vecchia casella nella tua casella presso di noi; "
        "nella vecchia non viene cancellato nulla. Una volta avviata l'importazione puoi chiudere questa "
        "finestra: riceverai un'e-mail di conferma con i numeri."),
    "old_mailbox": ("Your old mailbox", "Ihr altes Postfach", "Votre ancienne boîte aux lettres",
                    "La tua vecchia casella"),
    "old_email": ("Old e-mail address", "Alte E-Mail-Adresse", "Ancienne adresse e-mail",
                  "Vecchio indirizzo e-mail"),
    "old_password": ("Password of the old mailbox", "Passwort des alten Postfachs",
                     "Mot de passe de l'ancienne boîte", "Password della vecchia casella"),
    "password_not_kept": (
        "Used only for this import and erased when it ends.",
        "Wird nur für diesen Import verwendet und danach gelöscht.",
        "Utilisé uniquement pour cette importation et effacé à la fin.",
        "Usata solo per questa importazione e cancellata al termine."),
    "detected_provider": ("Provider: {name}", "Anbieter: {name}", "Fournisseur : {name}", "Gestore: {name}"),
    "advanced": ("Advanced settings (IMAP server)", "Erweiterte Einstellungen (IMAP-Server)",
                 "Paramètres avancés (serveur IMAP)", "Impostazioni avanzate (server IMAP)"),
    "field_provider": ("Provider", "Anbieter", "Fournisseur", "Gestore"),
    "provider_auto": ("Detect from the address", "Aus der Adresse erkennen", "Détecter d'après l'adresse",
                      "Rileva dall'indirizzo"),
    "provider_other": ("Other IMAP server", "Anderer IMAP-Server", "Autre serveur IMAP", "Altro server IMAP"),
    "field_host": ("IMAP server", "IMAP-Server", "Serveur IMAP", "Server IMAP"),
    "field_port": ("Port", "Port", "Port", "Porta"),
    "field_security": ("Encryption", "Verschlüsselung", "Chiffrement", "Crittografia"),
    "security_auto": ("Automatic", "Automatisch", "Automatique", "Automatica"),
    "security_ssl": ("SSL/TLS (usually port 993)", "SSL/TLS (meist Port 993)", "SSL/TLS (en général port 993)",
                     "SSL/TLS (di solito porta 993)"),
    "security_starttls": ("STARTTLS (usually port 143)", "STARTTLS (meist Port 143)",
                          "STARTTLS (en général port 143)", "STARTTLS (di solito porta 143)"),
    "security_none": ("None (trusted networks only)", "Keine (nur in vertrauenswürdigen Netzen)",
                      "Aucun (réseaux de confiance uniquement)", "Nessuna (solo reti fidate)"),
    "field_username": ("Login name (if it is not the address)", "Benutzername (falls nicht die Adresse)",
                       "Identifiant (si ce n'est pas l'adresse)", "Nome utente (se non è l'indirizzo)"),
    "second_source": (
        "Import a second old address at the same time",
        "Gleichzeitig eine zweite alte Adresse importieren",
        "Importer en même temps une deuxième ancienne adresse",
        "Importa contemporaneamente un secondo vecchio indirizzo"),
    "second_source_help": (
        "Its mail goes into the same new mailbox.",
        "Ihre E-Mails kommen in dasselbe neue Postfach.",
        "Ses messages vont dans la même nouvelle boîte.",
        "La sua posta finisce nella stessa nuova casella."),
    "second_email": ("Second old e-mail address", "Zweite alte E-Mail-Adresse",
                     "Deuxième ancienne adresse e-mail", "Secondo vecchio indirizzo e-mail"),
    "second_password": ("Password of the second old mailbox", "Passwort des zweiten alten Postfachs",
                        "Mot de passe de la deuxième ancienne boîte", "Password della seconda vecchia casella"),
    "new_mailbox": ("Your new mailbox", "Ihr neues Postfach", "Votre nouvelle boîte aux lettres",
                    "La tua nuova casella"),
    "field_target": ("Import into", "Importieren in", "Importer dans", "Importa in"),
    "options": ("Options", "Optionen", "Options", "Opzioni"),
    "exclude_label": (
        "Folders to leave out (optional, one per line)",
        "Ordner, die nicht übernommen werden (optional, einer pro Zeile)",
        "Dossiers à ne pas importer (facultatif, un par ligne)",
        "Cartelle da escludere (facoltativo, una per riga)"),
    "exclude_help": ("For example Spam or Trash.", "Zum Beispiel Spam oder Papierkorb.",
                     "Par exemple Spam ou Corbeille.", "Ad esempio Spam o Cestino."),
    "notify_label": (
        "Also send the confirmation to (optional)",
        "Bestätigung zusätzlich senden an (optional)",
        "Envoyer aussi la confirmation à (facultatif)",
        "Invia la conferma anche a (facoltativo)"),
    "notify_help": ("E-mail addresses, separated by commas.", "E-Mail-Adressen, durch Kommas getrennt.",
                    "Adresses e-mail, séparées par des virgules.", "Indirizzi e-mail, separati da virgole."),
    "import_button": ("Import", "Importieren", "Importer", "Importa"),
    "oauth_google": ("Sign in with Google", "Mit Google anmelden", "Se connecter avec Google",
                     "Accedi con Google"),
    "oauth_microsoft": ("Sign in with Microsoft", "Mit Microsoft anmelden", "Se connecter avec Microsoft",
                        "Accedi con Microsoft"),
    "oauth_or": (
        "Or sign in with your provider instead of giving a password:",
        "Oder melden Sie sich bei Ihrem Anbieter an, statt ein Passwort anzugeben:",
        "Ou connectez-vous chez votre fournisseur au lieu de donner un mot de passe :",
        "Oppure accedi presso il tuo gestore invece di indicare una password:"),
    "oauth_ready": (
        "Signed in with {provider} as {email}: leave the password empty.",
        "Bei {provider} angemeldet als {email}: Lassen Sie das Passwort leer.",
        "Connecté chez {provider} en tant que {email} : laissez le mot de passe vide.",
        "Accesso presso {provider} come {email}: lascia vuota la password."),
    "add_mailbox_title": ("Add another of your mailboxes", "Ein weiteres Ihrer Postfächer hinzufügen",
                          "Ajouter une autre de vos boîtes aux lettres", "Aggiungi un'altra delle tue caselle"),
    "add_mailbox_help": (
        "To import into another of your mailboxes here, sign in to it once.",
        "Um in ein weiteres Ihrer Postfächer bei uns zu importieren, melden Sie sich einmal damit an.",
        "Pour importer dans une autre de vos boîtes chez nous, connectez-vous-y une fois.",
        "Per importare in un'altra tua casella presso di noi, accedi una volta con essa."),
    "add_mailbox_button": ("Add mailbox", "Postfach hinzufügen", "Ajouter la boîte", "Aggiungi casella"),
    "notice_mailbox_added": (
        "Mailbox added: you can now choose it as the new mailbox.",
        "Postfach hinzugefügt: Sie können es jetzt als neues Postfach wählen.",
        "Boîte ajoutée : vous pouvez maintenant la choisir comme nouvelle boîte.",
        "Casella aggiunta: ora puoi sceglierla come nuova casella."),
    "form_errors": ("Please check the form:", "Bitte prüfen Sie das Formular:",
                    "Veuillez vérifier le formulaire :", "Controlla il modulo:"),
    "err_old_email": ("Give the old e-mail address.", "Geben Sie die alte E-Mail-Adresse ein.",
                      "Indiquez l'ancienne adresse e-mail.", "Inserisci il vecchio indirizzo e-mail."),
    "err_not_email": (
        "“{value}” is not an e-mail address: write it as name@example.com.",
        "„{value}“ ist keine E-Mail-Adresse: Schreiben Sie sie als name@example.com.",
        "« {value} » n'est pas une adresse e-mail : écrivez-la sous la forme nom@exemple.com.",
        "«{value}» non è un indirizzo e-mail: scrivilo come nome@esempio.com."),
    "err_old_password": (
        "Give the password of {email}, or sign in with your provider.",
        "Geben Sie das Passwort von {email} ein oder melden Sie sich bei Ihrem Anbieter an.",
        "Indiquez le mot de passe de {email} ou connectez-vous chez votre fournisseur.",
        "Inserisci la password di {email} oppure accedi presso il tuo gestore."),
    "err_port": (
        "The port must be a number from 1 to 65535 (usually 993).",
        "Der Port muss eine Zahl von 1 bis 65535 sein (meist 993).",
        "Le port doit être un nombre de 1 à 65535 (en général 993).",
        "La porta deve essere un numero da 1 a 65535 (di solito 993)."),
    "err_notify": (
        "“{value}” is not an e-mail address: separate the addresses with commas.",
        "„{value}“ ist keine E-Mail-Adresse: Trennen Sie die Adressen durch Kommas.",
        "« {value} » n'est pas une adresse e-mail : séparez les adresses par des virgules.",
        "«{value}» non è un indirizzo e-mail: separa gli indirizzi con delle virgole."),
    "err_target": (
        "Choose one of your mailboxes as the new mailbox.",
        "Wählen Sie eines Ihrer Postfächer als neues Postfach.",
        "Choisissez l'une de vos boîtes comme nouvelle boîte.",
        "Scegli una delle tue caselle come nuova casella."),
    "err_second": ("Second old address: {message}", "Zweite alte Adresse: {message}",
                   "Deuxième ancienne adresse : {message}", "Secondo vecchio indirizzo: {message}"),
    "err_security": (
        "Choose the encryption from the list.",
        "Wählen Sie die Verschlüsselung aus der Liste.",
        "Choisissez le chiffrement dans la liste.",
        "Scegli la crittografia dall'elenco."),
    "err_provider_unknown": (
        "We do not know the provider “{provider}”: choose one from the list, or “Other IMAP server”.",
        "Den Anbieter „{provider}“ kennen wir nicht: Wählen Sie einen aus der Liste oder „Anderer IMAP-Server“.",
        "Nous ne connaissons pas le fournisseur « {provider} » : choisissez-en un dans la liste, ou « Autre "
        "serveur IMAP ».",
        "Non conosciamo il gestore «{provider}»: scegline uno dall'elenco, oppure «Altro server IMAP»."),
    "err_no_host": (
        "We do not know the IMAP server of {domain}: give it under “Advanced settings (IMAP server)”.",
        "Den IMAP-Server von {domain} kennen wir nicht: Geben Sie ihn unter „Erweiterte Einstellungen "
        "(IMAP-Server)“ an.",
        "Nous ne connaissons pas le serveur IMAP de {domain} : indiquez-le dans « Paramètres avancés (serveur "
        "IMAP) ».",
        "Non conosciamo il server IMAP di {domain}: indicalo in «Impostazioni avanzate (server IMAP)»."),
    "err_password_not_accepted": (
        "{provider} does not accept a password here: leave the password empty and use the sign-in button of "
        "{provider}.",
        "{provider} akzeptiert hier kein Passwort: Lassen Sie das Passwort leer und verwenden Sie die "
        "Anmeldeschaltfläche von {provider}.",
        "{provider} n'accepte pas de mot de passe ici : laissez le mot de passe vide et utilisez le bouton de "
        "connexion de {provider}.",
        "{provider} non accetta una password qui: lascia vuota la password e usa il pulsante di accesso di "
        "{provider}."),
    # --- states and phases ---------------------------------------------------------------------
    "state_queued": ("Waiting to start", "Wartet auf den Start", "En attente", "In attesa"),
    "state_running": ("Running", "Läuft", "En cours", "In corso"),
    "state_done": ("Done", "Fertig", "Terminée", "Completata"),
    "state_partial": ("Done, with problems", "Fertig, mit Problemen", "Terminée, avec des problèmes",
                      "Completata, con problemi"),
    "state_failed": ("Failed", "Fehlgeschlagen", "Échouée", "Non riuscita"),
    "state_cancelled": ("Cancelled", "Abgebrochen", "Annulée", "Annullata"),
    "state_waiting_signin": ("Waiting for sign-in", "Wartet auf Anmeldung", "En attente de connexion",
                             "In attesa di accesso"),
    "state_waiting": ("Waiting for a daily limit", "Wartet auf das Tageslimit", "En attente de la limite journalière",
                      "In attesa del limite giornaliero"),
    "phase_waiting": ("Paused until the provider allows more", "Pausiert, bis der Anbieter mehr erlaubt",
                      "En pause jusqu'à ce que le fournisseur en permette plus",
                      "In pausa finché il provider non consente di più"),
    # --- daily budgets and the fit check (issue 15) ------------------------------------------------
    "waiting_heading": ("Waiting", "Wartet", "En attente", "In attesa"),
    "waiting_resume": ("Going on by itself at {time} (in {left}).", "Geht von selbst weiter um {time} (in {left}).",
                       "Reprend toute seule à {time} (dans {left}).", "Riprende da sola alle {time} (tra {left})."),
    "waiting_resume_now": ("Going on now.", "Geht jetzt weiter.", "Reprend maintenant.", "Riprende ora."),
    "waiting_why": ("Why: {detail}", "Grund: {detail}", "Pourquoi : {detail}", "Perché: {detail}"),
    "fit_heading": ("Fit check", "Platzprüfung", "Vérification de la place", "Verifica dello spazio"),
    "fit_label": ("Will it fit?", "Passt es?", "Est-ce que ça tient ?", "Ci sta?"),
    "fit_fits": ("It fits", "Es passt", "Ça tient", "Ci sta"),
    "fit_too_big": ("It fits, but some messages are too big for the new mailbox",
                    "Es passt, aber einige Nachrichten sind zu groß für das neue Postfach",
                    "Ça tient, mais certains messages sont trop gros pour la nouvelle boîte",
                    "Ci sta, ma alcuni messaggi sono troppo grandi per la nuova casella"),
    "fit_does_not_fit": ("It does not fit", "Es passt nicht", "Ça ne tient pas", "Non ci sta"),
    "fit_to_copy": ("To copy: {messages} messages, {size}", "Zu kopieren: {messages} Nachrichten, {size}",
                    "À copier : {messages} messages, {size}", "Da copiare: {messages} messaggi, {size}"),
    "fit_free": ("Free in the new mailbox: {size}", "Frei im neuen Postfach: {size}",
                 "Libre dans la nouvelle boîte : {size}", "Libero nella nuova casella: {size}"),
    "fit_too_big_list": ("Too big to copy (these fail alone):", "Zu groß zum Kopieren (nur diese schlagen fehl):",
                         "Trop gros pour être copiés (seuls ceux-ci échouent) :",
                         "Troppo grandi da copiare (falliscono solo questi):"),
    "fit_finish": ("Finish time: {text}", "Fertig: {text}", "Fin prévue : {text}", "Fine prevista: {text}"),
    "duration_days": ("{d} days", "{d} Tage", "{d} jours", "{d} giorni"),
    "phase_queued": ("Waiting for a free slot", "Wartet auf einen freien Platz", "En attente d'une place libre",
                     "In attesa di un posto libero"),
    "phase_planning": ("Connecting and reading the folders", "Verbinden und Ordner lesen",
                       "Connexion et lecture des dossiers", "Connessione e lettura delle cartelle"),
    "phase_scanning": ("Counting the messages", "Nachrichten werden gezählt", "Comptage des messages",
                       "Conteggio dei messaggi"),
    "phase_copying": ("Copying", "Kopieren", "Copie en cours", "Copia in corso"),
    "phase_finished": ("Finished", "Beendet", "Terminé", "Terminato"),
    # --- my imports ----------------------------------------------------------------------------
    "imports_title": ("My imports", "Meine Importe", "Mes importations", "Le mie importazioni"),
    "imports_empty": ("No imports yet.", "Noch keine Importe.", "Aucune importation pour l'instant.",
                      "Nessuna importazione finora."),
    "new_import": ("New import", "Neuer Import", "Nouvelle importation", "Nuova importazione"),
    "col_date": ("Date", "Datum", "Date", "Data"),
    "col_from": ("From", "Von", "De", "Da"),
    "col_to": ("Into", "Nach", "Vers", "In"),
    "col_state": ("State", "Status", "État", "Stato"),
    "col_progress": ("Progress", "Fortschritt", "Progression", "Avanzamento"),
    "details": ("Details", "Details", "Détails", "Dettagli"),
    "details_of": ("Details of the import from {email}", "Details zum Import von {email}",
                   "Détails de l'importation de {email}", "Dettagli dell'importazione da {email}"),
    # --- one import ----------------------------------------------------------------------------
    "import_heading": ("Import from {source}", "Import von {source}", "Importation de {source}",
                       "Importazione da {source}"),
    "import_into": ("into {target}", "nach {target}", "vers {target}", "in {target}"),
    "progress_label": ("Progress of the import", "Fortschritt des Imports", "Progression de l'importation",
                       "Avanzamento dell'importazione"),
    "progress_messages": ("{done} of {total} messages", "{done} von {total} Nachrichten",
                          "{done} messages sur {total}", "{done} di {total} messaggi"),
    "progress_messages_open": ("{done} messages", "{done} Nachrichten", "{done} messages", "{done} messaggi"),
    "progress_bytes": ("{done} of {total}", "{done} von {total}", "{done} sur {total}", "{done} di {total}"),
    "eta": ("About {time} left", "Noch etwa {time}", "Encore environ {time}", "Ancora circa {time}"),
    "eta_soon": ("Less than a minute left", "Noch weniger als eine Minute", "Moins d'une minute restante",
                 "Meno di un minuto"),
    "current_folder": ("Current folder: {folder}", "Aktueller Ordner: {folder}", "Dossier en cours : {folder}",
                       "Cartella attuale: {folder}"),
    "close_ok": (
        "You can close this window: the import goes on without it, and you get a confirmation mail when "
        "it ends.",
        "Sie können dieses Fenster schließen: Der Import läuft ohne es weiter, und Sie erhalten eine "
        "Bestätigung per E-Mail, wenn er fertig ist.",
        "Vous pouvez fermer cette fenêtre : l'importation continue sans elle, et vous recevrez un e-mail "
        "de confirmation à la fin.",
        "Puoi chiudere questa finestra: l'importazione continua senza di essa e riceverai un'e-mail di "
        "conferma al termine."),
    "summary": ("Summary", "Übersicht", "Résumé", "Riepilogo"),
    "t_copied": ("Copied", "Kopiert", "Copiés", "Copiati"),
    "t_skipped": ("Already there (skipped)", "Schon vorhanden (übersprungen)", "Déjà présents (ignorés)",
                  "Già presenti (saltati)"),
    "t_failed": ("Not copied", "Nicht kopiert", "Non copiés", "Non copiati"),
    "t_restored": ("Copied again (gone from the new mailbox)", "Erneut kopiert (im neuen Postfach verschwunden)",
                   "Copiés à nouveau (disparus de la nouvelle boîte)", "Copiati di nuovo (spariti dalla nuova casella)"),
    "t_source_messages": ("Messages in the old mailbox", "Nachrichten im alten Postfach",
                          "Messages dans l'ancienne boîte", "Messaggi nella vecchia casella"),
    "t_bytes": ("Data copied", "Kopierte Datenmenge", "Données copiées", "Dati copiati"),
    "folders": ("Folders", "Ordner", "Dossiers", "Cartelle"),
    "col_folder": ("Folder", "Ordner", "Dossier", "Cartella"),
    "col_saved_as": ("Saved as", "Gespeichert als", "Enregistré sous", "Salvata come"),
    "col_note": ("Note", "Hinweis", "Remarque", "Nota"),
    "folder_left_out": ("left out", "nicht übernommen", "non importé", "esclusa"),
    "failures": ("Messages not copied", "Nicht kopierte Nachrichten", "Messages non copiés",
                 "Messaggi non copiati"),
    "col_subject": ("Subject", "Betreff", "Objet", "Oggetto"),
    "col_reason": ("Reason", "Grund", "Raison", "Motivo"),
    "no_subject": ("(no subject)", "(kein Betreff)", "(sans objet)", "(senza oggetto)"),
    "failures_truncated": ("… and {n} more, not listed here.", "… und {n} weitere, hier nicht aufgeführt.",
                           "… et {n} autres, non listés ici.", "… e altri {n}, non elencati qui."),
    "error_heading": ("What went wrong", "Was schiefging", "Ce qui n'a pas fonctionné",
                      "Che cosa non ha funzionato"),
    "cancel_button": ("Cancel the import", "Import abbrechen", "Annuler l'importation", "Annulla l'importazione"),
    "cancel_requested": (
        "Cancelling: the import stops after the messages it is copying now.",
        "Wird abgebrochen: Der Import hält nach den Nachrichten an, die er gerade kopiert.",
        "Annulation en cours : l'importation s'arrête après les messages en cours de copie.",
        "Annullamento in corso: l'importazione si ferma dopo i messaggi che sta copiando."),
    "again_title": ("Import again (only new mail)", "Erneut importieren (nur neue E-Mails)",
                    "Importer à nouveau (seulement les nouveaux messages)", "Importa di nuovo (solo posta nuova)"),
    "again_help": (
        "Copies only what is not in your new mailbox yet. For your safety the password of {email} was "
        "erased when the import ended: type it again.",
        "Kopiert nur, was noch nicht in Ihrem neuen Postfach ist. Zu Ihrer Sicherheit wurde das Passwort "
        "von {email} am Ende des Imports gelöscht: Geben Sie es erneut ein.",
        "Copie seulement ce qui n'est pas encore dans votre nouvelle boîte. Pour votre sécurité, le mot de "
        "passe de {email} a été effacé à la fin de l'importation : saisissez-le à nouveau.",
        "Copia solo ciò che non è ancora nella tua nuova casella. Per la tua sicurezza la password di "
        "{email} è stata cancellata al termine dell'importazione: inseriscila di nuovo."),
    "again_button": ("Import again", "Erneut importieren", "Importer à nouveau", "Importa di nuovo"),
    "all_imports": ("All my imports", "Alle meine Importe", "Toutes mes importations",
                    "Tutte le mie importazioni"),
    "live_lost": (
        "Live updates are not available: this page reloads itself.",
        "Live-Anzeige nicht verfügbar: Diese Seite lädt sich selbst neu.",
        "Mise à jour en direct indisponible : cette page se recharge d'elle-même.",
        "Aggiornamento in tempo reale non disponibile: questa pagina si ricarica da sola."),
    # --- batch ---------------------------------------------------------------------------------
    "batch_title": ("Import several mailboxes (CSV)", "Mehrere Postfächer importieren (CSV)",
                    "Importer plusieurs boîtes (CSV)", "Importa più caselle (CSV)"),
    "batch_intro": (
        "Up to 25 mailboxes at once, one row per mailbox. Every row is checked first: nothing starts while "
        "a row has a problem.",
        "Bis zu 25 Postfächer auf einmal, eine Zeile pro Postfach. Zuerst wird jede Zeile geprüft: Solange "
        "eine Zeile ein Problem hat, startet nichts.",
        "Jusqu'à 25 boîtes à la fois, une ligne par boîte. Chaque ligne est d'abord vérifiée : rien ne "
        "démarre tant qu'une ligne pose problème.",
        "Fino a 25 caselle alla volta, una riga per casella. Ogni riga viene prima controllata: non parte "
        "nulla finché una riga ha un problema."),
    "batch_step_download": (
        "Download the model CSV and fill it in (a spreadsheet program opens it).",
        "Laden Sie die Muster-CSV herunter und füllen Sie sie aus (ein Tabellenprogramm öffnet sie).",
        "Téléchargez le modèle CSV et remplissez-le (un tableur l'ouvre).",
        "Scarica il modello CSV e compilalo (si apre con un foglio di calcolo)."),
    "batch_step_upload": ("Upload it here.", "Laden Sie sie hier hoch.", "Envoyez-le ici.", "Caricalo qui."),
    "batch_download": ("Download the model CSV", "Muster-CSV herunterladen", "Télécharger le modèle CSV",
                       "Scarica il modello CSV"),
    "batch_file": ("CSV file", "CSV-Datei", "Fichier CSV", "File CSV"),
    "batch_submit": ("Check and start", "Prüfen und starten", "Vérifier et démarrer", "Controlla e avvia"),
    "batch_errors": (
        "Nothing was started. Correct these lines and upload the file again:",
        "Es wurde nichts gestartet. Korrigieren Sie diese Zeilen und laden Sie die Datei erneut hoch:",
        "Rien n'a été démarré. Corrigez ces lignes et envoyez à nouveau le fichier :",
        "Non è stato avviato nulla. Correggi queste righe e carica di nuovo il file:"),
    "col_line": ("Line", "Zeile", "Ligne", "Riga"),
    "col_problem": ("Problem", "Problem", "Problème", "Problema"),
    "err_batch_no_file": ("Choose a CSV file first.", "Wählen Sie zuerst eine CSV-Datei.",
                          "Choisissez d'abord un fichier CSV.", "Scegli prima un file CSV."),
    "err_batch_encoding": (
        "The file is not UTF-8 text: save it as “CSV UTF-8” and upload it again.",
        "Die Datei ist kein UTF-8-Text: Speichern Sie sie als „CSV UTF-8“ und laden Sie sie erneut hoch.",
        "Le fichier n'est pas du texte UTF-8 : enregistrez-le en « CSV UTF-8 » et envoyez-le à nouveau.",
        "Il file non è testo UTF-8: salvalo come «CSV UTF-8» e caricalo di nuovo."),
    "err_batch_too_big": (
        "The file is larger than 1 MB: a batch has at most 25 rows.",
        "Die Datei ist größer als 1 MB: Ein Stapel hat höchstens 25 Zeilen.",
        "Le fichier dépasse 1 Mo : un lot compte au plus 25 lignes.",
        "Il file supera 1 MB: un lotto ha al massimo 25 righe."),
    "batch_heading": ("Batch of {n} mailboxes", "Stapel mit {n} Postfächern", "Lot de {n} boîtes",
                      "Lotto di {n} caselle"),
    "batch_running_note": (
        "The rows run on their own: you can close this window. Each mailbox gets its confirmation mail.",
        "Die Zeilen laufen von selbst: Sie können dieses Fenster schließen. Jedes Postfach erhält seine "
        "Bestätigung per E-Mail.",
        "Les lignes s'exécutent d'elles-mêmes : vous pouvez fermer cette fenêtre. Chaque boîte reçoit "
        "son e-mail de confirmation.",
        "Le righe procedono da sole: puoi chiudere questa finestra. Ogni casella riceve la sua e-mail di "
        "conferma."),
    # --- errors --------------------------------------------------------------------------------
    "error_title_404": ("Not found", "Nicht gefunden", "Introuvable", "Non trovato"),
    "error_404": (
        "This page does not exist, or it belongs to someone else.",
        "Diese Seite gibt es nicht, oder sie gehört jemand anderem.",
        "Cette page n'existe pas ou appartient à quelqu'un d'autre.",
        "Questa pagina non esiste oppure appartiene a qualcun altro."),
    "error_title_405": ("Not possible here", "Hier nicht möglich", "Impossible ici", "Non possibile qui"),
    "error_405": (
        "This page cannot be used this way. Go back to the start page and try again from there.",
        "Diese Seite lässt sich so nicht verwenden. Gehen Sie zur Startseite zurück und versuchen Sie es von "
        "dort aus erneut.",
        "Cette page ne s'utilise pas ainsi. Revenez à la page d'accueil et réessayez à partir de là.",
        "Questa pagina non si usa in questo modo. Torna alla pagina iniziale e riprova da lì."),
    "err_private_source": (
        "The server {host} is on a private network: this service does not connect there. Give the public "
        "name of your old mail server.",
        "Der Server {host} liegt in einem privaten Netz: Dieser Dienst verbindet sich nicht dorthin. Geben Sie "
        "den öffentlichen Namen Ihres alten Mailservers an.",
        "Le serveur {host} se trouve sur un réseau privé : ce service ne s'y connecte pas. Indiquez le nom "
        "public de votre ancien serveur de messagerie.",
        "Il server {host} si trova in una rete privata: questo servizio non vi si collega. Indica il nome "
        "pubblico del tuo vecchio server di posta."),
    "batch_not_your_mailbox": (
        "{email} is not one of your mailboxes: add that mailbox first under 'Add another of your mailboxes' "
        "on the start page, or leave this row out.",
        "{email} ist keines Ihrer Postfächer: Fügen Sie dieses Postfach zuerst auf der Startseite unter „Ein "
        "weiteres Ihrer Postfächer hinzufügen“ hinzu, oder lassen Sie diese Zeile weg.",
        "{email} n'est pas l'une de vos boîtes aux lettres : ajoutez d'abord cette boîte sur la page d'accueil, "
        "sous « Ajouter une autre de vos boîtes aux lettres », ou retirez cette ligne.",
        "{email} non è una delle tue caselle: aggiungi prima questa casella nella pagina iniziale, in «Aggiungi "
        "un'altra delle tue caselle», oppure togli questa riga."),
    "error_title_403": ("Not allowed", "Nicht erlaubt", "Non autorisé", "Non consentito"),
    "error_csrf": (
        "This form has expired or was not sent from this site. Reload the page and try again.",
        "Dieses Formular ist abgelaufen oder wurde nicht von dieser Website gesendet. Laden Sie die Seite "
        "neu und versuchen Sie es erneut.",
        "Ce formulaire a expiré ou n'a pas été envoyé depuis ce site. Rechargez la page et réessayez.",
        "Questo modulo è scaduto o non è stato inviato da questo sito. Ricarica la pagina e riprova."),
    "error_title": ("Something went wrong", "Etwas ist schiefgegangen", "Un problème est survenu",
                    "Qualcosa è andato storto"),
    "back_home": ("Back to the start page", "Zurück zur Startseite", "Retour à la page d'accueil",
                  "Torna alla pagina iniziale"),
    # --- units (the progress script gets them too) ---------------------------------------------
    "unit_b": ("B", "B", "o", "B"),
    "unit_kb": ("KB", "KB", "Ko", "KB"),
    "unit_mb": ("MB", "MB", "Mo", "MB"),
    "unit_gb": ("GB", "GB", "Go", "GB"),
    "duration_min": ("{m} min", "{m} Min.", "{m} min", "{m} min"),
    "duration_h_min": ("{h} h {m} min", "{h} Std. {m} Min.", "{h} h {m} min", "{h} h {m} min"),
}

# Hints shown under the old address once its provider is known (the web form's words).
_HINTS: dict[str, tuple[str, str, str, str]] = {
    "aol": (
        "AOL needs an app password: create one on the account security page.",
        "AOL verlangt ein App-Passwort: Erstellen Sie es auf der Seite zur Kontosicherheit.",
        "AOL exige un mot de passe d'application : créez-le sur la page de sécurité du compte.",
        "AOL richiede una password per le app: creala nella pagina della sicurezza dell'account."),
    "bluewin": (
        "Use the full address and your Bluewin password; Swisscom may ask you to confirm by SMS.",
        "Verwenden Sie die ganze Adresse und Ihr Bluewin-Passwort; Swisscom kann eine Bestätigung per SMS "
        "verlangen.",
        "Utilisez l'adresse complète et votre mot de passe Bluewin ; Swisscom peut demander une "
        "confirmation par SMS.",
        "Usa l'indirizzo completo e la tua password Bluewin; Swisscom può chiedere una conferma via SMS."),
    "gmail": (
        "Turn on IMAP in the Gmail settings, then sign in with Google, or use an app password (needs "
        "2-Step Verification).",
        "Aktivieren Sie IMAP in den Gmail-Einstellungen und melden Sie sich dann mit Google an, oder "
        "verwenden Sie ein App-Passwort (erfordert die Bestätigung in zwei Schritten).",
        "Activez IMAP dans les paramètres de Gmail, puis connectez-vous avec Google ou utilisez un mot de "
        "passe d'application (nécessite la validation en deux étapes).",
        "Attiva IMAP nelle impostazioni di Gmail, poi accedi con Google oppure usa una password per le app "
        "(richiede la verifica in due passaggi)."),
    "gmx": (
        "Turn on POP3/IMAP access in the GMX settings first; with two-factor authentication use an "
        "application-specific password.",
        "Aktivieren Sie zuerst den POP3/IMAP-Abruf in den GMX-Einstellungen; mit Zwei-Faktor-"
        "Authentifizierung verwenden Sie ein anwendungsspezifisches Passwort.",
        "Activez d'abord l'accès POP3/IMAP dans les paramètres de GMX ; avec l'authentification à deux "
        "facteurs, utilisez un mot de passe spécifique à l'application.",
        "Attiva prima l'accesso POP3/IMAP nelle impostazioni di GMX; con l'autenticazione a due fattori "
        "usa una password specifica per l'applicazione."),
    "icloud": (
        "iCloud needs an app-specific password (appleid.apple.com > Sign-In and Security).",
        "iCloud verlangt ein app-spezifisches Passwort (appleid.apple.com > Anmeldung und Sicherheit).",
        "iCloud exige un mot de passe pour app (appleid.apple.com > Connexion et sécurité).",
        "iCloud richiede una password specifica per le app (appleid.apple.com > Accesso e sicurezza)."),
    "imap": (
        "Give the IMAP server of your old provider under Advanced settings; the login name is usually the "
        "full address.",
        "Geben Sie unter Erweiterte Einstellungen den IMAP-Server Ihres alten Anbieters an; der "
        "Benutzername ist meist die ganze Adresse.",
        "Indiquez le serveur IMAP de votre ancien fournisseur dans les paramètres avancés ; l'identifiant "
        "est en général l'adresse complète.",
        "Indica il server IMAP del tuo vecchio gestore nelle impostazioni avanzate; il nome utente è di "
        "solito l'indirizzo completo."),
    "infomaniak": (
        "Use the full address and the mailbox password. For your own domain at Infomaniak, choose "
        "Infomaniak under Advanced settings.",
        "Verwenden Sie die ganze Adresse und das Passwort des Postfachs. Für eine eigene Domain bei "
        "Infomaniak wählen Sie Infomaniak unter Erweiterte Einstellungen.",
        "Utilisez l'adresse complète et le mot de passe de la boîte. Pour votre propre domaine chez "
        "Infomaniak, choisissez Infomaniak dans les paramètres avancés.",
        "Usa l'indirizzo completo e la password della casella. Per un tuo dominio presso Infomaniak, "
        "scegli Infomaniak nelle impostazioni avanzate."),
    "microsoft365": (
        "IMAP must be allowed for the mailbox; sign in with Microsoft.",
        "IMAP muss für das Postfach erlaubt sein; melden Sie sich mit Microsoft an.",
        "IMAP doit être autorisé pour la boîte ; connectez-vous avec Microsoft.",
        "IMAP deve essere consentito per la casella; accedi con Microsoft."),
    "outlook": (
        "Outlook.com accepts only the Microsoft sign-in: passwords and app passwords no longer work.",
        "Outlook.com akzeptiert nur die Anmeldung mit Microsoft: Passwörter und App-Passwörter funktionieren "
        "nicht mehr.",
        "Outlook.com n'accepte que la connexion Microsoft : les mots de passe et mots de passe "
        "d'application ne fonctionnent plus.",
        "Outlook.com accetta solo l'accesso con Microsoft: password e password per le app non funzionano "
        "più."),
    "swisscom": (
        "Use the full address and your password; Swisscom may ask you to confirm by SMS.",
        "Verwenden Sie die ganze Adresse und Ihr Passwort; Swisscom kann eine Bestätigung per SMS "
        "verlangen.",
        "Utilisez l'adresse complète et votre mot de passe ; Swisscom peut demander une confirmation par "
        "SMS.",
        "Usa l'indirizzo completo e la tua password; Swisscom può chiedere una conferma via SMS."),
    "webde": (
        "Turn on POP3/IMAP access in the WEB.DE settings first; with two-factor authentication use an "
        "application-specific password.",
        "Aktivieren Sie zuerst den POP3/IMAP-Abruf in den WEB.DE-Einstellungen; mit Zwei-Faktor-"
        "Authentifizierung verwenden Sie ein anwendungsspezifisches Passwort.",
        "Activez d'abord l'accès POP3/IMAP dans les paramètres de WEB.DE ; avec l'authentification à deux "
        "facteurs, utilisez un mot de passe spécifique à l'application.",
        "Attiva prima l'accesso POP3/IMAP nelle impostazioni di WEB.DE; con l'autenticazione a due fattori "
        "usa una password specifica per l'applicazione."),
    "yahoo": (
        "Yahoo needs an app password (Account security > Generate app password; needs 2-step "
        "verification).",
        "Yahoo verlangt ein App-Passwort (Kontosicherheit > App-Passwort generieren; erfordert die "
        "Bestätigung in zwei Schritten).",
        "Yahoo exige un mot de passe d'application (Sécurité du compte > Générer un mot de passe "
        "d'application ; nécessite la validation en deux étapes).",
        "Yahoo richiede una password per le app (Sicurezza dell'account > Genera password per app; "
        "richiede la verifica in due passaggi)."),
    "zoho": (
        "Turn on IMAP access in the Zoho Mail settings; with two-factor authentication use an app "
        "password. EU accounts: give the server imap.zoho.eu under Advanced settings.",
        "Aktivieren Sie den IMAP-Zugriff in den Zoho-Mail-Einstellungen; mit Zwei-Faktor-Authentifizierung "
        "verwenden Sie ein App-Passwort. EU-Konten: Geben Sie unter Erweiterte Einstellungen den Server "
        "imap.zoho.eu an.",
        "Activez l'accès IMAP dans les paramètres de Zoho Mail ; avec l'authentification à deux facteurs, "
        "utilisez un mot de passe d'application. Comptes UE : indiquez le serveur imap.zoho.eu dans les "
        "paramètres avancés.",
        "Attiva l'accesso IMAP nelle impostazioni di Zoho Mail; con l'autenticazione a due fattori usa una "
        "password per le app. Account UE: indica il server imap.zoho.eu nelle impostazioni avanzate."),
}
_HINTS["gmx-com"] = _HINTS["gmx"]

# The problems of an uploaded batch CSV (``csvbatch.reader.PROBLEMS`` and ``service.batches.PROBLEMS``),
# by code: ``{value}`` and the like are cells as the file has them (quoted), column names stay as
# the file spells them. English is the reader's own text, except where a page speaks to a person.
_PROBLEMS: dict[str, tuple[str, str, str, str]] = {
    "empty_file": (
        "the file is empty: the first line must be the header {columns}",
        "die Datei ist leer: Die erste Zeile muss die Kopfzeile {columns} sein",
        "le fichier est vide : la première ligne doit être l'en-tête {columns}",
        "il file è vuoto: la prima riga deve essere l'intestazione {columns}"),
    "unparsable_line": (
        "cannot parse this line ({error})",
        "diese Zeile lässt sich nicht lesen ({error})",
        "impossible de lire cette ligne ({error})",
        "impossibile leggere questa riga ({error})"),
    "missing_header": (
        "missing header: the first line must be the column names {columns}",
        "Kopfzeile fehlt: Die erste Zeile muss die Spaltennamen {columns} enthalten",
        "en-tête manquant : la première ligne doit contenir les noms de colonnes {columns}",
        "intestazione mancante: la prima riga deve contenere i nomi delle colonne {columns}"),
    "missing_columns": (
        "missing columns: {missing} (required: {required})",
        "fehlende Spalten: {missing} (erforderlich: {required})",
        "colonnes manquantes : {missing} (obligatoires : {required})",
        "colonne mancanti: {missing} (obbligatorie: {required})"),
    "unknown_columns": (
        "unknown columns: {unknown} (known: {known})",
        "unbekannte Spalten: {unknown} (bekannt: {known})",
        "colonnes inconnues : {unknown} (connues : {known})",
        "colonne sconosciute: {unknown} (note: {known})"),
    "duplicate_columns": (
        "columns appear twice: {columns}",
        "doppelt vorhandene Spalten: {columns}",
        "colonnes présentes deux fois : {columns}",
        "colonne presenti due volte: {columns}"),
    "empty_field": (
        "empty required field",
        "Pflichtfeld ist leer",
        "champ obligatoire vide",
        "campo obbligatorio vuoto"),
    "not_address": (
        "{value} is not an email address",
        "{value} ist keine E-Mail-Adresse",
        "{value} n'est pas une adresse e-mail",
        "{value} non è un indirizzo e-mail"),
    "not_address_commas": (
        "{value} is not an email address (separate addresses with ';')",
        "{value} ist keine E-Mail-Adresse (trennen Sie Adressen mit ';')",
        "{value} n'est pas une adresse e-mail (séparez les adresses par ';')",
        "{value} non è un indirizzo e-mail (separa gli indirizzi con ';')"),
    "not_host": (
        "{value} is not a host name or IP address",
        "{value} ist kein Servername und keine IP-Adresse",
        "{value} n'est ni un nom de serveur ni une adresse IP",
        "{value} non è né un nome di server né un indirizzo IP"),
    "unknown_provider": (
        "unknown provider {value} (known: {known})",
        "unbekannter Anbieter {value} (bekannt: {known})",
        "fournisseur inconnu {value} (connus : {known})",
        "gestore sconosciuto {value} (noti: {known})"),
    "no_provider": (
        "cannot detect provider for domain {domain}: set {side}_provider or {side}_host",
        "Anbieter der Domain {domain} nicht erkennbar: Füllen Sie {side}_provider oder {side}_host aus",
        "impossible de reconnaître le fournisseur du domaine {domain} : remplissez {side}_provider ou "
        "{side}_host",
        "impossibile riconoscere il gestore del dominio {domain}: compila {side}_provider o {side}_host"),
    "not_port": (
        "{value} is not a port (1-65535)",
        "{value} ist kein Port (1–65535)",
        "{value} n'est pas un port (1 à 65535)",
        "{value} non è una porta (1–65535)"),
    "not_security": (
        "{value} is not a security mode (ssl, starttls or none)",
        "{value} ist keine Verschlüsselungsart (ssl, starttls oder none)",
        "{value} n'est pas un mode de chiffrement (ssl, starttls ou none)",
        "{value} non è un tipo di crittografia (ssl, starttls o none)"),
    "uploaded_password_ref": (
        "env:/file: references are not accepted in an uploaded file: put the password itself in the cell",
        "env:/file:-Verweise sind in einer hochgeladenen Datei nicht erlaubt: Schreiben Sie das Passwort selbst "
        "in die Zelle",
        "les références env:/file: ne sont pas acceptées dans un fichier envoyé : mettez le mot de passe "
        "lui-même dans la cellule",
        "i riferimenti env:/file: non sono accettati in un file caricato: scrivi la password stessa nella cella"),
    "uploaded_oauth_token": (
        "not accepted in an uploaded file: leave it empty (Google and Microsoft rows without a password are "
        "signed in later, by a link)",
        "in einer hochgeladenen Datei nicht erlaubt: Lassen Sie das Feld leer (Google- und Microsoft-Zeilen ohne "
        "Passwort werden später über einen Link angemeldet)",
        "non accepté dans un fichier envoyé : laissez-le vide (les lignes Google et Microsoft sans mot de passe "
        "se connectent plus tard, par un lien)",
        "non accettato in un file caricato: lascialo vuoto (le righe Google e Microsoft senza password accedono "
        "più tardi, tramite un link)"),
    "uploaded_ca_file": (
        "not accepted in an uploaded file: leave it empty (the service cannot read files you name)",
        "in einer hochgeladenen Datei nicht erlaubt: Lassen Sie das Feld leer (der Dienst kann keine von Ihnen "
        "genannten Dateien lesen)",
        "non accepté dans un fichier envoyé : laissez-le vide (le service ne peut pas lire les fichiers que vous "
        "indiquez)",
        "non accettato in un file caricato: lascialo vuoto (il servizio non può leggere i file che indichi)"),
    "needs_host": (
        "provider {provider} needs a host: set {side}_host",
        "Anbieter {provider} braucht einen Server: Füllen Sie {side}_host aus",
        "le fournisseur {provider} demande un serveur : remplissez {side}_host",
        "il gestore {provider} richiede un server: compila {side}_host"),
    "empty_password": (
        "empty password: {provider} has no OAuth sign-in, give the password",
        "Passwort fehlt: {provider} bietet keine OAuth-Anmeldung, geben Sie das Passwort an",
        "mot de passe vide : {provider} n'offre pas de connexion OAuth, indiquez le mot de passe",
        "password vuota: {provider} non offre l'accesso OAuth, indica la password"),
    "no_passwords": (
        "{provider} does not accept passwords: leave {side}_password empty it is signed in later, by a link",
        "{provider} akzeptiert keine Passwörter: Lassen Sie {side}_password leer, die Anmeldung folgt später über "
        "einen Link",
        "{provider} n'accepte pas de mot de passe : laissez {side}_password vide, la connexion se fera plus tard, "
        "par un lien",
        "{provider} non accetta password: lascia vuoto {side}_password, l'accesso avverrà più tardi tramite un "
        "link"),
    "not_fixed_target": (
        "{value}: every import here goes into {where}: leave target_{field} empty",
        "{value}: Jeder Import geht hier nach {where}: Lassen Sie target_{field} leer",
        "{value} : ici, chaque importation va vers {where} : laissez target_{field} vide",
        "{value}: qui ogni importazione va in {where}: lascia vuoto target_{field}"),
    "login_is_address": (
        "{value}: the login here is the address: leave target_username empty",
        "{value}: Der Benutzername ist hier die Adresse: Lassen Sie target_username leer",
        "{value} : ici, l'identifiant est l'adresse : laissez target_username vide",
        "{value}: qui il nome utente è l'indirizzo: lascia vuoto target_username"),
    "too_many_rows": (
        "more than {max_rows} rows: split the file ({rows} rows)",
        "mehr als {max_rows} Zeilen: Teilen Sie die Datei auf ({rows} Zeilen)",
        "plus de {max_rows} lignes : divisez le fichier ({rows} lignes)",
        "più di {max_rows} righe: dividi il file ({rows} righe)"),
    "too_many_fields": (
        "{fields} fields, expected {expected}: quote values that contain {sep} or '\"'",
        "{fields} Felder statt {expected}: Setzen Sie Werte, die {sep} oder '\"' enthalten, in Anführungszeichen",
        "{fields} champs au lieu de {expected} : mettez entre guillemets les valeurs qui contiennent {sep} ou '\"'",
        "{fields} campi invece di {expected}: metti tra virgolette i valori che contengono {sep} o '\"'"),
    "unclosed_quote": (
        "{fields} fields, expected {expected}: is a quote not closed?",
        "{fields} Felder statt {expected}: Ist ein Anführungszeichen nicht geschlossen?",
        "{fields} champs au lieu de {expected} : un guillemet n'est-il pas fermé ?",
        "{fields} campi invece di {expected}: c'è una virgoletta non chiusa?"),
    "too_few_fields": (
        "{fields} fields, expected {expected}: check separators and quotes",
        "{fields} Felder statt {expected}: Prüfen Sie Trennzeichen und Anführungszeichen",
        "{fields} champs au lieu de {expected} : vérifiez les séparateurs et les guillemets",
        "{fields} campi invece di {expected}: controlla separatori e virgolette"),
    "same_mailbox": (
        "source and target are the same mailbox",
        "Quelle und Ziel sind dasselbe Postfach",
        "la source et la destination sont la même boîte aux lettres",
        "origine e destinazione sono la stessa casella"),
    "duplicate_row": (
        "duplicate row: same source and target as line {first}",
        "doppelte Zeile: gleiche Quelle und gleiches Ziel wie Zeile {first}",
        "ligne en double : même source et même destination que la ligne {first}",
        "riga doppia: stessa origine e stessa destinazione della riga {first}"),
    "no_rows": (
        "no accounts: add one row per mailbox below the header",
        "keine Konten: Fügen Sie unter der Kopfzeile eine Zeile pro Postfach hinzu",
        "aucun compte : ajoutez une ligne par boîte aux lettres sous l'en-tête",
        "nessun account: aggiungi una riga per casella sotto l'intestazione"),
    "not_utf8": (
        "not UTF-8: save the file as UTF-8 CSV",
        "nicht UTF-8: Speichern Sie die Datei als CSV in UTF-8",
        "pas en UTF-8 : enregistrez le fichier au format CSV UTF-8",
        "non è UTF-8: salva il file come CSV UTF-8"),
    "too_large": (
        "too large for a batch file (over {max_bytes} bytes): is this the right file?",
        "zu groß für eine Stapeldatei (über {max_bytes} Bytes): Ist das die richtige Datei?",
        "trop volumineux pour un fichier de lot (plus de {max_bytes} octets) : est-ce le bon fichier ?",
        "troppo grande per un file di gruppo (oltre {max_bytes} byte): è il file giusto?"),
    "ref_needs_name": (
        "env: needs a variable name (env:NAME)",
        "env: braucht einen Variablennamen (env:NAME)",
        "env: demande un nom de variable (env:NOM)",
        "env: richiede il nome di una variabile (env:NOME)"),
    "env_unset": (
        "environment variable {name} is not set",
        "die Umgebungsvariable {name} ist nicht gesetzt",
        "la variable d'environnement {name} n'est pas définie",
        "la variabile d'ambiente {name} non è impostata"),
    "file_missing": (
        "file {path} does not exist",
        "die Datei {path} existiert nicht",
        "le fichier {path} n'existe pas",
        "il file {path} non esiste"),
    "file_unreadable": (
        "cannot read file {path} ({error})",
        "die Datei {path} lässt sich nicht lesen ({error})",
        "impossible de lire le fichier {path} ({error})",
        "impossibile leggere il file {path} ({error})"),
    "file_empty": (
        "file {path} is empty",
        "die Datei {path} ist leer",
        "le fichier {path} est vide",
        "il file {path} è vuoto"),
    "bad_ref": (
        "invalid env:/file: reference",
        "ungültiger env:/file:-Verweis",
        "référence env:/file: invalide",
        "riferimento env:/file: non valido"),
    "ca_directory": (
        "{path} is a directory, not a CA certificate (PEM)",
        "{path} ist ein Ordner, kein CA-Zertifikat (PEM)",
        "{path} est un dossier, pas un certificat d'AC (PEM)",
        "{path} è una cartella, non un certificato CA (PEM)"),
    "ca_unusable": (
        "{path} is not a usable CA certificate ({reason}): give the PEM file of the CA",
        "{path} ist kein brauchbares CA-Zertifikat ({reason}): Geben Sie die PEM-Datei der CA an",
        "{path} n'est pas un certificat d'AC utilisable ({reason}) : indiquez le fichier PEM de l'AC",
        "{path} non è un certificato CA utilizzabile ({reason}): indica il file PEM della CA"),
    "token_not_ref": (
        "must be env:NAME or file:PATH (keep tokens out of the CSV)",
        "muss env:NAME oder file:PFAD sein (Tokens gehören nicht in die CSV-Datei)",
        "doit être env:NOM ou file:CHEMIN (ne mettez pas de jetons dans le CSV)",
        "deve essere env:NOME o file:PERCORSO (non mettere token nel CSV)"),
    "password_and_token": (
        "give {side}_password or {side}_oauth_token, not both",
        "geben Sie {side}_password oder {side}_oauth_token an, nicht beides",
        "indiquez {side}_password ou {side}_oauth_token, pas les deux",
        "indica {side}_password o {side}_oauth_token, non entrambi"),
    "google_app_password": (
        "Google rows need an app password (or run `mailmigrate auth {provider} --email {email}` first)",
        "Google-Zeilen brauchen ein App-Passwort (oder führen Sie zuerst `mailmigrate auth {provider} --email "
        "{email}` aus)",
        "les lignes Google demandent un mot de passe d'application (ou lancez d'abord `mailmigrate auth "
        "{provider} --email {email}`)",
        "le righe Google richiedono una password per le app (oppure esegui prima `mailmigrate auth {provider} "
        "--email {email}`)"),
    "empty_password_ref": (
        "empty password: {provider} has no OAuth sign-in, give a password, env:NAME or file:PATH",
        "Passwort fehlt: {provider} bietet keine OAuth-Anmeldung, geben Sie ein Passwort, env:NAME oder "
        "file:PFAD an",
        "mot de passe vide : {provider} n'offre pas de connexion OAuth, indiquez un mot de passe, env:NOM ou "
        "file:CHEMIN",
        "password vuota: {provider} non offre l'accesso OAuth, indica una password, env:NOME o file:PERCORSO"),
    "no_passwords_signin": (
        "{provider} does not accept passwords: leave {side}_password empty to use a stored sign-in "
        "(`mailmigrate auth {provider} --email {email}`)",
        "{provider} akzeptiert keine Passwörter: Lassen Sie {side}_password leer, um eine gespeicherte Anmeldung "
        "zu verwenden (`mailmigrate auth {provider} --email {email}`)",
        "{provider} n'accepte pas de mot de passe : laissez {side}_password vide pour utiliser une connexion "
        "enregistrée (`mailmigrate auth {provider} --email {email}`)",
        "{provider} non accetta password: lascia vuoto {side}_password per usare un accesso salvato "
        "(`mailmigrate auth {provider} --email {email}`)"),
    # --- what the service adds ---------------------------------------------------------------
    "target_password_required": (
        "required: give the password of each target mailbox",
        "erforderlich: Geben Sie das Passwort jedes Zielpostfachs an",
        "obligatoire : indiquez le mot de passe de chaque boîte de destination",
        "obbligatorio: indica la password di ogni casella di destinazione"),
    "not_your_mailbox": _TEXTS["batch_not_your_mailbox"],
    "password_from_session": (
        "leave it empty: the service uses the password you signed in with",
        "leer lassen: Der Dienst verwendet das Passwort, mit dem Sie sich angemeldet haben",
        "laissez-le vide : le service utilise le mot de passe avec lequel vous vous êtes connecté",
        "lascialo vuoto: il servizio usa la password con cui hai effettuato l'accesso"),
    "private_source": _TEXTS["err_private_source"],
    "signin_not_offered": (
        "{provider} rows without a password need {signin} sign-in, which this service does not offer: give an "
        "app password",
        "{provider}-Zeilen ohne Passwort brauchen die Anmeldung mit {signin}, die dieser Dienst nicht anbietet: "
        "Geben Sie ein App-Passwort an",
        "les lignes {provider} sans mot de passe demandent la connexion avec {signin}, que ce service n'offre "
        "pas : indiquez un mot de passe d'application",
        "le righe {provider} senza password richiedono l'accesso con {signin}, che questo servizio non offre: "
        "indica una password per le app"),
    "signin_not_offered_no_password": (
        "{provider} rows without a password need {signin} sign-in, which this service does not offer: this "
        "service cannot import from it",
        "{provider}-Zeilen ohne Passwort brauchen die Anmeldung mit {signin}, die dieser Dienst nicht anbietet: "
        "Von dort kann dieser Dienst nicht importieren",
        "les lignes {provider} sans mot de passe demandent la connexion avec {signin}, que ce service n'offre "
        "pas : ce service ne peut pas importer depuis ce fournisseur",
        "le righe {provider} senza password richiedono l'accesso con {signin}, che questo servizio non offre: "
        "questo servizio non può importare da lì"),
}
# Where the page words a problem for a person, not as the reader or the API says it.
PAGE_WORDED = frozenset({"not_your_mailbox", "private_source"})


def problem_codes() -> list[str]:
    return list(_PROBLEMS)


def problem_template(code: str, lang: str) -> str | None:
    row = _PROBLEMS.get(code)
    return row[_INDEX[lang]] if row else None

_INDEX = {lang: i for i, lang in enumerate(LANGS)}
# Thousands and decimal separators (narrow no-break space in French).
_SEPARATORS = {"en": (",", "."), "de": (".", ","), "fr": ("\u202f", ","), "it": (".", ",")}


def text_keys() -> list[str]:
    return list(_TEXTS)


def hint_presets() -> list[str]:
    return list(_HINTS)


def accepted(header: str | None) -> str | None:
    """The first of our languages an Accept-Language header asks for (by q-value), else None."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in _INDEX and q > 0:
            choices.append((-q, i, primary))
    return min(choices)[2] if choices else None


def choose(*, query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The switch (``?lang=``) wins, then the cookie it set, then the browser's languages, then English."""
    for lang in (query, cookie):
        if lang in _INDEX:
            return str(lang)
    return accepted(accept_language) or "en"


class Translator:
    """One language's texts and number formats, for templates (``t("key", name=...)``)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in _INDEX else "en"
        self._i = _INDEX[self.lang]

    def __call__(self, key: str, **values: object) -> str:
        text = _TEXTS[key][self._i]
        return text.format(**values) if values else text

    def problem(self, line_problem: Any) -> str:
        """A batch CSV's problem (``csvbatch.reader.CsvProblem``) in this language, after its
        column ("source_port: ..."); in English (its ``message``) when its code has no text here."""
        template = problem_template(line_problem.code, self.lang) if line_problem.code else None
        try:
            text = template.format(**line_problem.params) if template else line_problem.message
        except (KeyError, IndexError):  # params that do not fit: the English text says it right
            text = line_problem.message
        return f"{line_problem.column}: {text}" if line_problem.column else text

    def hint(self, preset: str) -> str | None:
        row = _HINTS.get(preset)
        return row[self._i] if row else None

    def number(self, n: int | float | None) -> str:
        if n is None:
            return "–"
        thousands, _ = _SEPARATORS[self.lang]
        return f"{int(n):,}".replace(",", thousands)

    def decimal(self, x: float, places: int = 1) -> str:
        thousands, point = _SEPARATORS[self.lang]
        return f"{x:,.{places}f}".replace(",", "\0").replace(".", point).replace("\0", thousands)

    def size(self, n: int | None) -> str:
        """Bytes as people read them: 0 B, 812 KB, 12.4 MB, 1.2 GB (1 KB = 1024 B)."""
        if n is None:
            return "–"
        if n < 1024:
            return f"{self.number(n)} {self('unit_b')}"
        for unit, scale in (("unit_kb", 1024), ("unit_mb", 1024**2), ("unit_gb", 1024**3)):
            if n < scale * 1024 or unit == "unit_gb":
                value = n / scale
                return f"{self.decimal(value, 0 if value >= 100 else 1)} {self(unit)}"
        raise AssertionError("unreachable")

    def percent(self, p: float | None) -> str:
        if p is None:
            return "–"
        return f"{p:.0f}%" if self.lang == "en" else f"{self.decimal(p, 0)} %"  # "42 %" elsewhere

    def eta(self, seconds: float | None) -> str | None:
        if seconds is None:
            return None
        if seconds < 60:
            return self("eta_soon")
        minutes = math.ceil(seconds / 60)
        if minutes < 60:
            return self("eta", time=self("duration_min", m=minutes))
        return self("eta", time=self("duration_h_min", h=minutes // 60, m=minutes % 60))

    def duration(self, seconds: float) -> str:
        """A duration in this language: "12 min", "5 h 3 min", "2 days"."""
        minutes = max(1, math.ceil(seconds / 60))
        if minutes < 60:
            return self("duration_min", m=minutes)
        if minutes < 48 * 60:
            return self("duration_h_min", h=minutes // 60, m=minutes % 60)
        return self("duration_days", d=round(minutes / 1440))

    def resume_line(self, iso: str | None) -> str:
        """When a job waiting for a daily budget goes on: "Going on by itself at 00:00 UTC (in 5 h 0 min)."
        (by the budgets' clock, which is the one that decides)."""
        if not iso:
            return ""
        from ..engine.budget import utc_now

        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        left = (at - utc_now()).total_seconds()
        if left <= 0:
            return self("waiting_resume_now")
        return self("waiting_resume", time=f"{at:%H:%M} UTC", left=self.duration(left))

    def state(self, state: str) -> str:
        key = f"state_{state}"
        return self(key) if key in _TEXTS else state

    def phase(self, phase: str | None) -> str:
        key = f"phase_{phase}"
        return self(key) if key in _TEXTS else ""

    def script_texts_json(self) -> str:
        """What the pages' script needs to write the same sentences in this language (JSON)."""
        keys = ["progress_messages", "progress_messages_open", "progress_bytes", "eta", "eta_soon",
                "current_folder", "duration_min", "duration_h_min", "unit_b", "unit_kb", "unit_mb", "unit_gb",
                "folder_left_out", "live_lost", "detected_provider"]
        keys += [k for k in _TEXTS if k.startswith(("state_", "phase_"))]
        return json.dumps({k: self(k) for k in keys}, ensure_ascii=False)
