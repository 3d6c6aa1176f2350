//! ToktraTray.exe: the per-user tray icon, started at logon (HKLM Run key). It asks
//! the service over `\\.\pipe\toktra-agent` for status, budget and notifications every
//! 15 seconds; the tooltip and menu show the user's budget, a balloon announces new
//! notifications (90 % of the department's budget, or its hard cap), and the menu
//! opens the dashboard.
//!
//! `ToktraTray.exe --print` asks once and prints what the tray would show, then exits
//! (for support, and for tests without a desktop). `--status-window` also opens a
//! small window with the same text.
#![windows_subsystem = "windows"]

use std::cell::RefCell;
use std::ptr;
use std::time::Duration;

use toktra_service::pipe::Client;
use toktra_service::protocol::{Notification, Op};
use toktra_service::tray::{TrayView, view};
use toktra_service::win::wide;
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows_sys::Win32::Graphics::Gdi::{
    BeginPaint, COLOR_WINDOW, EndPaint, InvalidateRect, PAINTSTRUCT, TextOutW,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::Shell::{
    NIF_ICON, NIF_INFO, NIF_MESSAGE, NIF_TIP, NIIF_WARNING, NIM_ADD, NIM_DELETE, NIM_MODIFY,
    NOTIFYICONDATAW, Shell_NotifyIconW, ShellExecuteW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    AppendMenuW, CreatePopupMenu, CreateWindowExW, DefWindowProcW, DestroyMenu, DestroyWindow,
    DispatchMessageW, GetCursorPos, GetMessageW, IDI_INFORMATION, LoadIconW, MF_GRAYED,
    MF_SEPARATOR, MF_STRING, MSG, PostQuitMessage, RegisterClassW, SW_SHOWNORMAL,
    SetForegroundWindow, SetTimer, ShowWindow, TPM_RETURNCMD, TPM_RIGHTBUTTON, TrackPopupMenu,
    TranslateMessage, WM_APP, WM_COMMAND, WM_CONTEXTMENU, WM_DESTROY, WM_LBUTTONUP, WM_PAINT,
    WM_RBUTTONUP, WM_TIMER, WNDCLASSW, WS_OVERLAPPEDWINDOW,
};

const WM_TRAY: u32 = WM_APP + 1;
const TIMER_ID: usize = 1;
const POLL: Duration = Duration::from_secs(15);
const CMD_DASHBOARD: usize = 100;
const CMD_EXIT: usize = 101;

struct Snapshot {
    view: TrayView,
    new_notifications: Vec<Notification>,
}

fn user() -> Option<String> {
    let u = std::env::var("USERNAME").ok()?;
    Some(match std::env::var("USERDOMAIN") {
        Ok(d) if !d.is_empty() => format!("{d}\\{u}"),
        _ => u,
    })
}

/// One round trip to the service; a stopped service is a state, not an error.
fn poll(after: u64) -> Snapshot {
    let ask = || -> Result<_, toktra_service::pipe::ClientError> {
        let mut c = Client::connect(Duration::from_secs(1))?;
        let status = c.call(Op::Status)?.status;
        let budget = c.call(Op::Budget)?.budget;
        let notes = c
            .call(Op::Notifications { after })?
            .notifications
            .unwrap_or_default();
        Ok((status, budget, notes))
    };
    let user = user();
    match ask() {
        Ok((status, budget, notes)) => Snapshot {
            view: view(status.as_ref(), budget.as_ref(), user.as_deref()),
            new_notifications: notes
                .into_iter()
                .filter(|n| n.user.is_none() || n.user == user)
                .collect(),
        },
        Err(_) => Snapshot {
            view: view(None, None, None),
            new_notifications: Vec::new(),
        },
    }
}

#[derive(Default)]
struct State {
    last_notification: u64,
    view: Option<TrayView>,
    status_window: HWND,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn copy_into(dst: &mut [u16], s: &str) {
    let w: Vec<u16> = s.encode_utf16().take(dst.len() - 1).collect();
    dst[..w.len()].copy_from_slice(&w);
    dst[w.len()] = 0;
}

fn icon_data(hwnd: HWND) -> NOTIFYICONDATAW {
    // SAFETY: plain-data struct; zero is a valid "nothing set".
    let mut nid: NOTIFYICONDATAW = unsafe { std::mem::zeroed() };
    nid.cbSize = std::mem::size_of::<NOTIFYICONDATAW>() as u32;
    nid.hWnd = hwnd;
    nid.uID = 1;
    nid
}

fn refresh(hwnd: HWND, first: bool) {
    let after = STATE.with(|s| s.borrow().last_notification);
    let snap = poll(after);
    let mut nid = icon_data(hwnd);
    nid.uFlags = NIF_TIP | NIF_ICON | NIF_MESSAGE;
    nid.uCallbackMessage = WM_TRAY;
    // SAFETY: a system icon; no module handle needed.
    nid.hIcon = unsafe { LoadIconW(ptr::null_mut(), IDI_INFORMATION) };
    copy_into(&mut nid.szTip, &snap.view.tooltip);
    if let Some(n) = snap.new_notifications.last() {
        nid.uFlags |= NIF_INFO;
        nid.dwInfoFlags = NIIF_WARNING;
        copy_into(&mut nid.szInfoTitle, &n.title);
        copy_into(&mut nid.szInfo, &n.message);
    }
    // SAFETY: nid is fully initialised for the flags set.
    unsafe { Shell_NotifyIconW(if first { NIM_ADD } else { NIM_MODIFY }, &nid) };
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(n) = snap.new_notifications.last() {
            s.last_notification = n.id;
        }
        s.view = Some(snap.view);
        if !s.status_window.is_null() {
            // SAFETY: our own window.
            unsafe { InvalidateRect(s.status_window, ptr::null(), 1) };
        }
    });
}

fn show_menu(hwnd: HWND) {
    let view = STATE.with(|s| s.borrow().view.clone());
    let Some(view) = view else { return };
    // SAFETY: menu created, shown modally and destroyed here; strings outlive the calls.
    unsafe {
        let menu = CreatePopupMenu();
        for line in &view.lines {
            let w = wide(line);
            AppendMenuW(menu, MF_STRING | MF_GRAYED, 0, w.as_ptr());
        }
        AppendMenuW(menu, MF_SEPARATOR, 0, ptr::null());
        let dash = wide("Open dashboard");
        let flags = if view.dashboard_url.is_some() {
            MF_STRING
        } else {
            MF_STRING | MF_GRAYED
        };
        AppendMenuW(menu, flags, CMD_DASHBOARD, dash.as_ptr());
        let exit = wide("Exit");
        AppendMenuW(menu, MF_STRING, CMD_EXIT, exit.as_ptr());
        let mut pt = POINT { x: 0, y: 0 };
        GetCursorPos(&mut pt);
        SetForegroundWindow(hwnd);
        let cmd = TrackPopupMenu(
            menu,
            TPM_RETURNCMD | TPM_RIGHTBUTTON,
            pt.x,
            pt.y,
            0,
            hwnd,
            ptr::null(),
        );
        DestroyMenu(menu);
        command(hwnd, cmd as usize, &view);
    }
}

fn command(hwnd: HWND, cmd: usize, view: &TrayView) {
    match cmd {
        CMD_DASHBOARD => {
            if let Some(url) = &view.dashboard_url {
                let (op, file) = (wide("open"), wide(url));
                // SAFETY: valid strings; the shell opens the default browser.
                unsafe {
                    ShellExecuteW(
                        hwnd,
                        op.as_ptr(),
                        file.as_ptr(),
                        ptr::null(),
                        ptr::null(),
                        SW_SHOWNORMAL,
                    )
                };
            }
        }
        // SAFETY: our own window.
        CMD_EXIT => unsafe {
            DestroyWindow(hwnd);
        },
        _ => {}
    }
}

fn paint(hwnd: HWND) {
    let lines = STATE.with(|s| {
        let s = s.borrow();
        s.view
            .as_ref()
            .map(|v| {
                std::iter::once(v.tooltip.clone())
                    .chain(v.lines.iter().cloned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    // SAFETY: standard WM_PAINT handling on our window.
    unsafe {
        let mut ps: PAINTSTRUCT = std::mem::zeroed();
        let dc = BeginPaint(hwnd, &mut ps);
        for (i, line) in lines.iter().enumerate() {
            let w: Vec<u16> = line.encode_utf16().collect();
            TextOutW(dc, 12, 12 + 22 * i as i32, w.as_ptr(), w.len() as i32);
        }
        EndPaint(hwnd, &ps);
    }
}

unsafe extern "system" fn wndproc(hwnd: HWND, msg: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
    match msg {
        WM_TIMER => refresh(hwnd, false),
        WM_TRAY => match (lparam & 0xffff) as u32 {
            WM_RBUTTONUP | WM_CONTEXTMENU | WM_LBUTTONUP => show_menu(hwnd),
            _ => {}
        },
        WM_COMMAND => {
            let view = STATE.with(|s| s.borrow().view.clone());
            if let Some(v) = view {
                command(hwnd, wparam & 0xffff, &v);
            }
        }
        WM_PAINT => paint(hwnd),
        WM_DESTROY => {
            let is_status = STATE.with(|s| s.borrow().status_window == hwnd);
            if !is_status {
                let nid = icon_data(hwnd);
                // SAFETY: removes our icon; then ends the message loop.
                unsafe {
                    Shell_NotifyIconW(NIM_DELETE, &nid);
                    PostQuitMessage(0);
                }
            }
        }
        // SAFETY: default handling for everything else.
        _ => return unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
    }
    0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("ToktraTray {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if args.iter().any(|a| a == "--print") {
        let snap = poll(0);
        println!("tooltip: {}", snap.view.tooltip);
        for l in &snap.view.lines {
            println!("menu: {l}");
        }
        println!(
            "menu: Open dashboard -> {}",
            snap.view
                .dashboard_url
                .as_deref()
                .unwrap_or("(unavailable)")
        );
        for n in &snap.new_notifications {
            println!("notification {}: {}: {}", n.id, n.title, n.message);
        }
        return;
    }
    // SAFETY: window class and windows registered and used on this thread only.
    unsafe {
        let instance = GetModuleHandleW(ptr::null());
        let class = wide("ToktraTrayWindow");
        let wc = WNDCLASSW {
            lpfnWndProc: Some(wndproc),
            hInstance: instance,
            lpszClassName: class.as_ptr(),
            hbrBackground: (COLOR_WINDOW + 1) as usize as _,
            ..std::mem::zeroed()
        };
        RegisterClassW(&wc);
        let title = wide("Toktra Agent");
        let hwnd = CreateWindowExW(
            0,
            class.as_ptr(),
            title.as_ptr(),
            WS_OVERLAPPEDWINDOW,
            0,
            0,
            0,
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            instance,
            ptr::null(),
        );
        if hwnd.is_null() {
            return;
        }
        if args.iter().any(|a| a == "--status-window") {
            let status = CreateWindowExW(
                0,
                class.as_ptr(),
                title.as_ptr(),
                WS_OVERLAPPEDWINDOW,
                40,
                40,
                620,
                200,
                ptr::null_mut(),
                ptr::null_mut(),
                instance,
                ptr::null(),
            );
            STATE.with(|s| s.borrow_mut().status_window = status);
            ShowWindow(status, SW_SHOWNORMAL);
        }
        refresh(hwnd, true);
        SetTimer(hwnd, TIMER_ID, POLL.as_millis() as u32, None);
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
}
