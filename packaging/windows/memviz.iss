; Inno Setup script for Windows: wraps the same PyInstaller one-folder build.
; Build on Windows:
;   python -m pip install -e ".[package]"
;   python -m PyInstaller --noconfirm packaging\memviz.spec      (gives dist\memviz\)
;   iscc /DAppVersion=<version> packaging\windows\memviz.iss     (gives dist\memviz-<version>-setup.exe)
; The frozen app starts its worker as "memviz.exe worker ...", so nothing else is needed.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif

[Setup]
AppId={{6B7D3C8E-2F4A-4E0B-9C55-6D1E8A4B2F10}
AppName=memviz
AppVersion={#AppVersion}
AppPublisher=memviz developers
DefaultDirName={autopf}\memviz
DefaultGroupName=memviz
OutputDir=..\..\dist
OutputBaseFilename=memviz-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\memviz.ico
UninstallDisplayIcon={app}\memviz.exe
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesEnvironment=yes
PrivilegesRequiredOverridesAllowed=dialog

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add memviz to PATH (for memviz run, compare and fit)"; Flags: unchecked
Name: "associate"; Description: "Open .memviz snapshots with memviz"

[Files]
Source: "..\..\dist\memviz\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\memviz"; Filename: "{app}\memviz.exe"; IconFilename: "{app}\memviz.exe"
Name: "{group}\Uninstall memviz"; Filename: "{uninstallexe}"
Name: "{autodesktop}\memviz"; Filename: "{app}\memviz.exe"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Software\Classes\.memviz"; ValueType: string; ValueName: ""; ValueData: "memviz.snapshot"; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\memviz.snapshot"; ValueType: string; ValueName: ""; ValueData: "memviz snapshot"; Flags: uninsdeletekey; Tasks: associate
Root: HKA; Subkey: "Software\Classes\memviz.snapshot\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\memviz.exe,0"; Tasks: associate
Root: HKA; Subkey: "Software\Classes\memviz.snapshot\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\memviz.exe"" ""%1"""; Tasks: associate
Root: HKA; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
; the same check as the Linux package test: two steps in a real worker, a screenshot
Filename: "{app}\memviz.exe"; Parameters: "--smoke-test ""{tmp}\memviz-smoke.png"""; StatusMsg: "Checking memviz starts and measures..."; Flags: runhidden waituntilterminated
Filename: "{app}\memviz.exe"; Description: "Start memviz"; Flags: nowait postinstall skipifsilent

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, 'Environment', 'Path', Path) then
    Path := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
